"""The local cluster's recipes, without building or starting anything: wrapper modules, the
configuration each process gets, the host's firewall rules, the addons, the certificates."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.localcluster import addons, build, cluster, pki


def release_go_mod(replaces=(), excludes=()) -> dict:
    """What `go mod edit -json` prints for a release's go.mod."""
    return {"Replace": [{"Old": dict(old), "New": dict(new)} for old, new in replaces],
            "Exclude": [dict(e) for e in excludes]}


def test_a_wrapper_module_requires_the_release_and_carries_its_directives():
    component = build.Component("k", "example.com/k", "v1.2.3", ("example.com/k/cmd/a",), sibling_version="v0.2.3")
    text = build.wrapper_go_mod(component, release_go_mod(
        replaces=[({"Path": "example.com/api"}, {"Path": "./staging/src/example.com/api"}),
                  ({"Path": "github.com/x/y", "Version": "v1.0.0"}, {"Path": "github.com/x/y", "Version": "v1.0.1"})],
        excludes=[{"Path": "github.com/bad/mod", "Version": "v1.17.0"}]), "go1.26.8")
    assert "module kuberl.dev/localcluster/k" in text and "\ngo 1.26.8\n" in text
    assert "require example.com/k v1.2.3" in text
    # A local-path replace becomes the sibling module as published; others are kept as they are.
    assert "\texample.com/api => example.com/api v0.2.3" in text
    assert "\tgithub.com/x/y v1.0.0 => github.com/x/y v1.0.1" in text
    assert "exclude (\n\tgithub.com/bad/mod v1.17.0\n)" in text


def test_a_local_replace_without_a_sibling_version_is_refused():
    component = build.Component("k", "example.com/k", "v1.2.3", ("example.com/k",))
    with pytest.raises(build.BuildError, match="sibling_version"):
        build.wrapper_go_mod(component, release_go_mod(replaces=[({"Path": "a"}, {"Path": "../a"})]), "go1.26.8")


def test_kubernetes_binaries_tell_their_version():
    flags = " ".join(build._kubernetes_ldflags("v1.37.2", "2026-10-27T12:01:04Z"))
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.37.2" in flags and f"-X {package}.gitMinor=37" in flags


def test_a_changed_recipe_builds_elsewhere():
    a = build.Component("k", "example.com/k", "v1.2.3", ("example.com/k",))
    b = build.Component("k", "example.com/k", "v1.2.3", ("example.com/k",), tags=("no_btrfs",))
    assert a.directory != b.directory and a.directory.name.startswith("k-v1.2.3-")


LAYOUT = cluster.Layout(Path("/srv/cluster"))


def test_the_kubelet_fits_this_machine_and_gives_pods_no_upstream_resolver():
    p = pki.ClusterPKI(*[pki.KeyPair(Path(f"/p/{i}.crt"), Path(f"/p/{i}.key")) for i in range(7)],
                       Path("/p/sa.key"), Path("/p/sa.pub"), {})
    config = yaml.safe_load(cluster.kubelet_config(LAYOUT, p))
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["oomScoreAdj"] == 0  # no CAP_SYS_RESOURCE to lower it
    assert config["clusterDNS"] == [cluster.DNS_SERVICE_IP]
    assert config["resolvConf"] == "/srv/cluster/config/resolv.conf"
    assert config["address"] == cluster.NODE_IP and config["authentication"]["anonymous"]["enabled"] is False
    assert config["containerRuntimeEndpoint"] == "unix:///srv/cluster/run/containerd.sock"


def test_containerd_pins_the_local_pause_image_and_clamps_oom_scores():
    config = tomllib.loads(cluster.containerd_config(LAYOUT, "kuberl.local/pause:v1"))
    images = config["plugins"]["io.containerd.cri.v1.images"]
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert images["pinned_images"]["sandbox"] == "kuberl.local/pause:v1"
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert config["grpc"]["address"] == "/srv/cluster/run/containerd.sock"


def test_pods_are_not_masqueraded_and_the_firewall_keeps_them_on_the_machine():
    (bridge, _portmap) = json.loads(cluster.cni_conflist(LAYOUT))["plugins"]
    assert bridge["ipMasq"] is False and bridge["ipam"]["ranges"] == [[{"subnet": cluster.NODE_POD_CIDR}]]
    rules = cluster._rules("eth0")
    forward = rules[cluster.FORWARD_CHAIN]
    # Pod to pod on the bridge first; then anything else from or to the pod range is dropped.
    assert forward[0] == ["-i", cluster.BRIDGE, "-o", cluster.BRIDGE, "-j", "ACCEPT"]
    assert ["-s", cluster.POD_CIDR, "-j", "DROP"] in forward and ["-d", cluster.POD_CIDR, "-j", "DROP"] in forward
    incoming = rules[cluster.INPUT_CHAIN]
    assert incoming[-2:] == [["-i", cluster.BRIDGE, "-j", "DROP"], ["-i", "eth0", "-d", cluster.NODE_IP, "-j", "DROP"]]


def test_no_range_overlaps_the_machine_or_another():
    import ipaddress

    machine = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("10.255.255.53/32")]
    ours = [ipaddress.ip_network(n) for n in (cluster.POD_CIDR, cluster.SERVICE_CIDR, f"{cluster.NODE_IP}/32")]
    for i, a in enumerate(ours):
        assert not any(a.overlaps(b) for b in machine + ours[i + 1:])


def test_cluster_dns_answers_cluster_names_only():
    (corefile,) = [d["data"]["Corefile"] for d in addons.coredns("img") if d["kind"] == "ConfigMap"]
    assert f"kubernetes {cluster.CLUSTER_DOMAIN}" in corefile and "forward" not in corefile
    (service,) = [d for d in addons.coredns("img") if d["kind"] == "Service"]
    assert service["spec"]["clusterIP"] == cluster.DNS_SERVICE_IP


def test_the_default_storage_class_is_the_local_path_provisioners():
    docs = addons.local_path_storage("provisioner", "helper", "/srv/volumes")
    (storage_class,) = [d for d in docs if d["kind"] == "StorageClass"]
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert json.loads(config["data"]["config.json"])["nodePathMap"][0]["paths"] == ["/srv/volumes"]
    images = [c["image"] for d in docs if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"]]
    assert images == ["provisioner"] and "image: helper" in config["data"]["helperPod.yaml"]


def test_certificates_chain_to_their_authority_and_name_who_holds_them(tmp_path: Path):
    made = pki.make_cluster_pki(tmp_path, node_name="n", node_ip="10.245.0.1", api_service_ip="10.96.0.1",
                                cluster_domain="cluster.local",
                                client_identities={"admin": ("root", ("system:masters",))})
    ca = x509.load_pem_x509_certificate(made.ca.cert.read_bytes())
    apiserver = x509.load_pem_x509_certificate(made.apiserver.cert.read_bytes())
    apiserver.verify_directly_issued_by(ca)
    names = apiserver.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"10.96.0.1", "10.245.0.1", "127.0.0.1"}
    assert "kubernetes.default.svc.cluster.local" in names.get_values_for_type(x509.DNSName)
    admin = x509.load_pem_x509_certificate(made.clients["admin"].cert.read_bytes())
    admin.verify_directly_issued_by(ca)
    assert admin.subject.rfc4514_string() == "CN=root,O=system:masters"
    etcd_ca = x509.load_pem_x509_certificate(made.etcd_ca.cert.read_bytes())
    x509.load_pem_x509_certificate(made.apiserver_etcd_client.cert.read_bytes()).verify_directly_issued_by(etcd_ca)
    assert oct(made.service_account_key.stat().st_mode & 0o777) == "0o600"
