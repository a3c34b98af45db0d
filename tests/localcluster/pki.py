"""Certificates and keys of the local cluster, made anew for each cluster with `cryptography`.

Two certificate authorities, as kubeadm lays them out: one for etcd (only the API server may
talk to it) and one for everything else (API server, kubelet, controllers, users). Every
component proves who it is with a client certificate whose CN/O is the user/group RBAC and the
Node authorizer know; the service-account key signs pod tokens.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    pair: KeyPair
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(authority: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=authority, crl_sign=authority, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                         decipher_only=False)


def make_authority(directory: Path, stem: str, common_name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(authority=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return Authority(pair, cert, key)


def issue(authority: Authority, directory: Path, stem: str, common_name: str, *,
          organizations: tuple[str, ...] = (), dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = (),
          server: bool = False, client: bool = False) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (x509.CertificateBuilder().subject_name(_name(common_name, organizations))
               .issuer_name(authority.certificate.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(authority=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.private_key.public_key()),
                              critical=False))
    alternative = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if alternative:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
    cert = builder.sign(authority.private_key, hashes.SHA256())
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pair.key)
    return pair


@dataclass(frozen=True)
class ClusterPKI:
    ca: KeyPair
    etcd_ca: KeyPair
    etcd_server: KeyPair
    apiserver_etcd_client: KeyPair
    apiserver: KeyPair
    apiserver_kubelet_client: KeyPair
    kubelet_serving: KeyPair
    service_account_key: Path
    service_account_public_key: Path
    clients: dict[str, KeyPair]  # component -> its client certificate (admin, kubelet, ...)


def make_cluster_pki(directory: Path, *, node_name: str, node_ip: str, api_service_ip: str,
                     cluster_domain: str, client_identities: dict[str, tuple[str, tuple[str, ...]]]) -> ClusterPKI:
    """Everything a fresh cluster needs; `client_identities` maps a component to its (user, groups)."""
    directory.mkdir(parents=True, exist_ok=True)
    etcd_ca = make_authority(directory, "etcd-ca", "kuberl-localcluster-etcd-ca")
    ca = make_authority(directory, "ca", "kuberl-localcluster-ca")
    loopback = ("127.0.0.1",)
    etcd_server = issue(etcd_ca, directory, "etcd-server", "etcd", dns_names=("localhost",), ips=loopback,
                        server=True, client=True)  # etcd's peer listener uses the same pair
    apiserver_etcd_client = issue(etcd_ca, directory, "apiserver-etcd-client", "kube-apiserver-etcd-client",
                                  client=True)
    api_names = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 f"kubernetes.default.svc.{cluster_domain}", "localhost")
    apiserver = issue(ca, directory, "apiserver", "kube-apiserver", dns_names=api_names,
                      ips=(api_service_ip, node_ip, *loopback), server=True)
    apiserver_kubelet_client = issue(ca, directory, "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                     organizations=("system:masters",), client=True)
    kubelet_serving = issue(ca, directory, "kubelet-serving", f"system:node:{node_name}",
                            organizations=("system:nodes",), dns_names=(node_name,), ips=(node_ip,), server=True)
    clients = {component: issue(ca, directory, f"{component}-client", user, organizations=groups, client=True)
               for component, (user, groups) in client_identities.items()}
    service_account = ec.generate_private_key(ec.SECP256R1())
    sa_key, sa_pub = directory / "service-account.key", directory / "service-account.pub"
    _write_key(service_account, sa_key)
    sa_pub.write_bytes(service_account.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    return ClusterPKI(ca.pair, etcd_ca.pair, etcd_server, apiserver_etcd_client, apiserver, apiserver_kubelet_client,
                      kubelet_serving, sa_key, sa_pub, clients)
