"""Who a caller is, proved by mutual TLS, and what it may call.

Every role serves TLS and asks each client for a certificate signed by the deployment's CA; a
client without one never gets past the handshake. A certificate names one identity as a SPIFFE
URI: `spiffe://kuberl.dev/ROLE`, or `spiffe://kuberl.dev/ROLE/experiment/ID` for a replica that
belongs to one experiment (the id percent-encoded). A server's certificate also carries the DNS
name `ROLE.kuberl`, which clients check whatever address they dialled, so a pod cannot pose as
another role's server. A certificate with no kuberl URI names its role by that DNS name alone
(what Helm's genSignedCert can make, for the chart's shared roles and clients).

AUTHORIZATION below is the one table of who may call which method. An identity with an
experiment acts for that experiment only: a request naming another (or none) is refused."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kuberl.pki import Authority, issue_pem, load_authority, make_authority, write_private
from kuberl.roles import ROLES
from kuberl.sizes import MAX_MESSAGE_BYTES

TRUST_DOMAIN = "kuberl.dev"
# Identities that are no role's server: the operator, read-only people and tools (the helm test
# pod, `kuberl status`), and whoever runs the deployment (`kuberl run`'s launcher, an admin's CLI).
CLIENT_IDENTITIES = ("operator", "reader", "admin")
IDENTITIES = (*ROLES, *CLIENT_IDENTITIES)
# Roles the operator runs per experiment (and `kuberl run` per manifest): their certificates name it.
PER_EXPERIMENT_ROLES = ("environment", "buffer", "learner")


@dataclass(frozen=True)
class Identity:
    role: str
    experiment_id: str | None = None  # None: acts for every experiment (shared roles, pool mode)

    def __post_init__(self) -> None:
        if self.role not in IDENTITIES:
            raise ValueError(f"identity: unknown role {self.role!r}; roles are {list(IDENTITIES)}")

    @property
    def uri(self) -> str:
        base = f"spiffe://{TRUST_DOMAIN}/{self.role}"
        return base if self.experiment_id is None else f"{base}/experiment/{quote(self.experiment_id, safe='')}"

    @classmethod
    def from_uri(cls, uri: str) -> Identity:
        prefix = f"spiffe://{TRUST_DOMAIN}/"
        if not uri.startswith(prefix):
            raise ValueError(f"identity: {uri!r} is not in the trust domain {TRUST_DOMAIN}")
        parts = uri[len(prefix):].split("/")
        if len(parts) == 1:
            return cls(parts[0])
        if len(parts) == 3 and parts[1] == "experiment" and parts[2]:
            return cls(parts[0], unquote(parts[2]))
        raise ValueError(f"identity: {uri!r} is not spiffe://{TRUST_DOMAIN}/ROLE[/experiment/ID]")

    def __str__(self) -> str:
        return self.role if self.experiment_id is None else f"{self.role} of {self.experiment_id}"


def server_name(role: str) -> str:
    """The DNS name in a role server's certificate, checked by its clients."""
    return f"{role}.kuberl"


# ---- authorization: the one table ------------------------------------------------------------------

READERS = frozenset({"operator", "reader", "admin"})
EVERYONE = frozenset(IDENTITIES)
CONTROL_BYTES = 1 << 20  # a control request is small; only the data plane carries arrays
DATA_BYTES = MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Rule:
    callers: frozenset[str]  # roles whose identities may call; admin may call everything
    max_request_bytes: int = CONTROL_BYTES


def _rule(*callers: str | frozenset[str], data: bool = False) -> Rule:
    names: set[str] = {"admin"}
    for caller in callers:
        names |= {caller} if isinstance(caller, str) else set(caller)
    return Rule(frozenset(names), DATA_BYTES if data else CONTROL_BYTES)


AUTHORIZATION: dict[str, Rule] = {
    # The experiment API drives actors and the learner; the operator and readers only look.
    "/kuberl.v1.ExperimentService/StartExperiment": _rule(),
    "/kuberl.v1.ExperimentService/StopExperiment": _rule(),
    "/kuberl.v1.ExperimentService/DeleteExperiment": _rule(),
    "/kuberl.v1.ExperimentService/GetExperimentStatus": _rule(READERS),
    "/kuberl.v1.ExperimentService/ListExperiments": _rule(READERS),
    "/kuberl.v1.EnvironmentService/Initialize": _rule("experiment"),
    "/kuberl.v1.EnvironmentService/StartRollout": _rule("experiment"),
    "/kuberl.v1.EnvironmentService/StopRollout": _rule("experiment"),
    # An experiment's actors write its replay; its learner reads it.
    "/kuberl.v1.BufferService/OpenReplay": _rule("environment", "experiment"),
    "/kuberl.v1.BufferService/PushTransitions": _rule("environment", data=True),
    "/kuberl.v1.BufferService/SampleBatch": _rule("learner"),
    "/kuberl.v1.BufferService/UpdatePriorities": _rule("learner", data=True),
    # A replica may read its own kind's state (a probe run inside its pod).
    "/kuberl.v1.BufferService/GetStats": _rule("learner", "experiment", "buffer", READERS),
    "/kuberl.v1.BufferService/ReleaseExperiment": _rule("experiment", "operator"),
    "/kuberl.v1.LearnerService/StartTraining": _rule("experiment"),
    "/kuberl.v1.LearnerService/StopTraining": _rule("experiment"),
    "/kuberl.v1.LearnerService/TrainStep": _rule("experiment"),
    "/kuberl.v1.LearnerService/GetLearnerStats": _rule("experiment", "learner", READERS),
    "/kuberl.v1.LearnerService/ReleaseExperiment": _rule("experiment", "operator"),
    # Only an experiment's learner publishes its weights; its actors and learner read them.
    "/kuberl.v1.PolicyService/GetPolicy": _rule("environment", "learner", "policy", READERS),
    "/kuberl.v1.PolicyService/UpdatePolicy": _rule("learner", data=True),
    "/kuberl.v1.PolicyService/ReleaseExperiment": _rule("experiment", "operator"),
    # What a released experiment left: anyone who may read may list it; only an admin forgets it early.
    "/kuberl.v1.PolicyService/ListResults": _rule(READERS),
    "/kuberl.v1.PolicyService/DeleteResult": _rule(),
    "/kuberl.v1.AnalyticsService/ReportMetrics": _rule(EVERYONE, data=True),
    "/kuberl.v1.AnalyticsService/QueryMetrics": _rule("experiment", READERS),
    "/kuberl.v1.AnalyticsService/ReleaseExperiment": _rule("experiment", "operator"),
    "/grpc.health.v1.Health/Check": _rule(EVERYONE),
    "/grpc.health.v1.Health/Watch": _rule(EVERYONE),
    "/grpc.health.v1.Health/List": _rule(EVERYONE),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": _rule(EVERYONE),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": _rule(EVERYONE),
}


def receive_limit(service_names: list[str]) -> int:
    """The largest request any method of these services may take: the server's receive limit, so
    that gRPC refuses a larger message before reading it (the table checks each method after)."""
    return max([CONTROL_BYTES] + [rule.max_request_bytes for method, rule in AUTHORIZATION.items()
                                  if method.split("/")[1] in service_names])


class Denied(PermissionError):
    pass


def named_experiments(request: Any) -> tuple[str, ...] | None:
    """The experiments a request acts on: its experiment_id, or those of the points it carries
    (metrics); None when it names none by its type (health, listings)."""
    fields = request.DESCRIPTOR.fields_by_name
    if "experiment_id" in fields:
        return (request.experiment_id,)
    if "points" in fields:
        return tuple({point.experiment_id for point in request.points})
    return None


def authorize(identity: Identity, method: str, experiments: tuple[str, ...] | None) -> None:
    """Raises Denied unless `identity` may call `method` on `experiments` (named_experiments)."""
    rule = AUTHORIZATION.get(method)
    if rule is None:
        raise Denied(f"{method} is not in the authorization table")
    if identity.role not in rule.callers:
        raise Denied(f"{identity} may not call {method}")
    if identity.experiment_id is not None and experiments is not None:
        others = sorted(set(experiments) - {identity.experiment_id})
        if others:
            raise Denied(f"{identity} acts for {identity.experiment_id!r} only, not {', '.join(map(repr, others))}")


def identity_of(names: list[str]) -> Identity | None:
    """The identity a certificate's subjectAltNames name: its one kuberl URI, else its one
    `ROLE.kuberl` DNS name; None when they name none (or several)."""
    uris = [name for name in names if name.startswith("spiffe://")]
    try:
        if uris:
            return Identity.from_uri(uris[0]) if len(uris) == 1 else None
        roles = {name.removesuffix(".kuberl") for name in names if name.endswith(".kuberl")}
        return Identity(roles.pop()) if len(roles) == 1 else None
    except ValueError:
        return None


def certificate_identity(cert: x509.Certificate) -> Identity:
    """The one kuberl identity a certificate names (identity_of its subjectAltNames); ValueError otherwise."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ValueError("no subjectAltName, so no kuberl identity") from None
    names = [*san.get_values_for_type(x509.UniformResourceIdentifier), *san.get_values_for_type(x509.DNSName)]
    identity = identity_of(names)
    if identity is None:
        raise ValueError(f"must name exactly one kuberl identity, not {names}")
    return identity


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The caller's identity from its verified certificate (None: no usable certificate)."""
    # peer_identities (the certificate's subjectAltNames), not auth_context: that copies every
    # property, the PEM certificate among them, on every call.
    return identity_of([name.decode(errors="replace") for name in context.peer_identities() or ()])


class Authorizer(grpc.ServerInterceptor):
    """Checks every call against AUTHORIZATION before any handler runs: the caller's identity,
    the request's size (before it is parsed) and, for experiment-scoped identities, the
    request's experiment. A request that does not parse is INVALID_ARGUMENT (grpc would say
    INTERNAL)."""

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        rule = AUTHORIZATION.get(method)

        def admit(context: grpc.ServicerContext, experiments: tuple[str, ...] | None) -> None:
            identity = peer_identity(context)
            if identity is None:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "no kuberl identity in the client certificate")
            try:
                authorize(identity, method, experiments)
            except Denied as err:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))

        if handler.unary_unary is not None:
            inner, parse = handler.unary_unary, handler.request_deserializer

            def unary(raw: bytes, context: grpc.ServicerContext) -> Any:
                if rule is None:  # not in the table: refused whoever asks
                    admit(context, None)
                if len(raw) > rule.max_request_bytes:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"{method}: request of {len(raw)} bytes; at most {rule.max_request_bytes}")
                try:
                    request = parse(raw)
                except Exception:  # protobuf's DecodeError and friends: not a message of this type
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request does not parse")
                admit(context, named_experiments(request))
                return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=None,
                                                       response_serializer=handler.response_serializer)
        for kind in ("unary_stream", "stream_unary", "stream_stream"):
            inner = getattr(handler, kind)
            if inner is not None:
                def streaming(request: Any, context: grpc.ServicerContext, inner: Any = inner) -> Any:
                    admit(context, None)
                    return inner(request, context)

                return getattr(grpc, f"{kind}_rpc_method_handler")(
                    streaming, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
        return handler


# ---- certificate files ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TlsFiles:
    """A directory laid out as a kubernetes.io/tls Secret with its CA (cert-manager's layout):
    ca.crt, tls.crt, tls.key. Read anew when they change, so leaf certificates rotate in place."""

    directory: Path

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        return self.directory / "ca.crt", self.directory / "tls.crt", self.directory / "tls.key"

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return tuple(p.read_bytes() for p in self.paths)  # type: ignore[return-value]
        except OSError as err:
            raise ValueError(f"TLS directory {self.directory}: {err.strerror}: {err.filename} "
                             "(it needs ca.crt, tls.crt and tls.key)") from None

    def stamp(self) -> tuple[float, ...]:
        """Changes whenever a file is replaced (a Secret volume swaps a symlink)."""
        try:
            return tuple(os.stat(p).st_mtime_ns for p in self.paths)
        except OSError:
            return ()

    def identity(self) -> Identity:
        _, cert, _ = self.read()
        try:
            return certificate_identity(x509.load_pem_x509_certificate(cert))
        except ValueError as err:
            raise ValueError(f"TLS directory {self.directory}: tls.crt: {err}") from None

    def server_credentials(self) -> grpc.ServerCredentials:
        """Client certificates required; new handshakes use the files as they are now."""
        seen = {"stamp": self.stamp()}
        lock = threading.Lock()

        def configuration() -> grpc.ServerCertificateConfiguration:
            ca, cert, key = self.read()
            return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            with lock:
                stamp = self.stamp()
                if not stamp or stamp == seen["stamp"]:
                    return None
                seen["stamp"] = stamp
            return configuration()

        return grpc.dynamic_ssl_server_credentials(configuration(), fetch, require_client_authentication=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self.read()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


# ---- a deployment's certificates, made here (kuberl run; tests) ------------------------------------

def identity_pem(authority: Authority, identity: Identity) -> dict[str, bytes]:
    """ca.crt, tls.crt and tls.key of one identity (a kubernetes.io/tls Secret's data); a role's
    certificate also serves as that role's server."""
    serves = (server_name(identity.role),) if identity.role in ROLES else ()
    cert, key = issue_pem(authority, identity.role, dns_names=serves, uris=(identity.uri,), server=bool(serves),
                          client=True)
    return {"ca.crt": authority.certificate.public_bytes(serialization.Encoding.PEM), "tls.crt": cert, "tls.key": key}


def issue_identity(authority: Authority, directory: Path, identity: Identity) -> TlsFiles:
    """A TLS directory for one identity."""
    directory.mkdir(parents=True, exist_ok=True)
    files = identity_pem(authority, identity)
    write_private(directory / "tls.key", files.pop("tls.key"))
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return TlsFiles(directory)


def authority_in(directory: Path) -> Authority:
    """The CA kept in `directory` (ca.crt, ca.key), made there first if there is none: a run
    directory's keeps it across resumes (its leaves are issued anew each start)."""
    if (directory / "ca.crt").exists() and (directory / "ca.key").exists():
        return load_authority(directory / "ca.crt", directory / "ca.key")
    directory.mkdir(parents=True, exist_ok=True)
    return make_authority(directory, "ca", "kuberl local CA")


def authorization_markdown() -> str:
    """AUTHORIZATION as the README's table (tests/test_readme.py keeps the two equal)."""
    lines = ["| method | who may call it | request limit |", "|---|---|---|"]
    for method, rule in AUTHORIZATION.items():
        callers = "everyone" if rule.callers == EVERYONE else ", ".join(sorted(rule.callers))
        lines.append(f"| `{method.lstrip('/')}` | {callers} | {rule.max_request_bytes >> 20} MiB |")
    return "\n".join(lines)
