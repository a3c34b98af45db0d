"""Certificates and keys of the local cluster, made anew for each cluster with `cryptography`.

Two certificate authorities, as kubeadm lays them out: one for etcd (only the API server may
talk to it) and one for everything else (API server, kubelet, controllers, users). Every
component proves who it is with a client certificate whose CN/O is the user/group RBAC and the
Node authorizer know; the service-account key signs pod tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kuberl.pki import KeyPair, write_key, issue, make_authority


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
    write_key(service_account, sa_key)
    sa_pub.write_bytes(service_account.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    return ClusterPKI(ca.pair, etcd_ca.pair, etcd_server, apiserver_etcd_client, apiserver, apiserver_kubelet_client,
                      kubelet_serving, sa_key, sa_pub, clients)
