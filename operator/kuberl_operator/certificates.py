"""Each experiment's certificates: when a role's Secret must be issued (again), decided from the
Secret as listed; the issuing itself (a new key) is the handlers'."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

# Leaves live 30 days (kuberl.pki.VALIDITY) and are replaced with 10 left: a Secret volume
# updates in place and the roles re-read their files at the next handshake, so nothing restarts.
RENEW_BEFORE = timedelta(days=10)


def reissue_reason(secret: dict[str, Any] | None, ca: x509.Certificate, now: datetime) -> str | None:
    """Why the role's Secret must be issued now (None: it is good as it is)."""
    if secret is None:
        return "missing"
    data = secret.get("data") or {}
    try:
        held_ca = x509.load_pem_x509_certificate(base64.b64decode(data["ca.crt"]))
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    except (KeyError, ValueError, binascii.Error):
        return "unreadable"
    if held_ca != ca or cert.issuer != ca.subject:  # compared as certificates, not as PEM text
        return "signed by another CA"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None
