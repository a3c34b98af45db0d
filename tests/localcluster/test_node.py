"""The local cluster as a pod sees it: cluster DNS, Services, claims that bind and are writable
by a non-root user, and nothing outside the machine: no upstream DNS, no address beyond the
pod bridge except the node's own API server and kubelet."""

from __future__ import annotations

import json

import pytest

from tests.kube import TestCluster
from tests.waiting import wait_for
from tests.localcluster import cluster

NAMESPACE = "kuberl-node-tests"
CHECK = """
import json, socket, sys
def connects(host, port):
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((host, port)); return True
    except OSError:
        return False
    finally:
        s.close()
def resolves(name):
    try:
        return sorted({a[4][0] for a in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)})
    except OSError:
        return []
outside = sys.argv[1]
print(json.dumps({
    "api_by_service": connects("10.96.0.1", 443), "api_by_node": connects("%(node)s", 6443),
    "resolver": connects("10.255.255.53", 53), "gateway": connects("192.0.2.1", 80),
    "machine_outside_ip": connects(outside, 22), "internet": connects("151.101.0.223", 443),
    "kubernetes": resolves("kubernetes.default.svc.cluster.local"), "external_name": resolves("deb.debian.org"),
    "headless": resolves("probe.%(ns)s.svc.cluster.local"),
}))
""" % {"node": cluster.NODE_IP, "ns": NAMESPACE}


@pytest.fixture(scope="module")
def node(kube_cluster: TestCluster, base_image: str):
    if kube_cluster.local_layout is None:
        pytest.skip(f"these are properties of this repository's local cluster, not of {kube_cluster.context}")
    kube_cluster.load_image(base_image)
    kube_cluster.ensure_namespace(NAMESPACE)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "labels": {"app": "probe"}}, "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "probe", "image": base_image, "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"], "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "probe"}}]}}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "probe"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe"},
               "spec": {"clusterIP": "None", "selector": {"app": "probe"}, "ports": [{"port": 80}]}}
    kube_cluster.apply([claim, service, pod], namespace=NAMESPACE)
    kube_cluster.kubectl("wait", "--for=condition=Ready", "pod/probe", "--timeout=180s", namespace=NAMESPACE,
                         timeout=200)
    yield kube_cluster
    kube_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_a_pod_reaches_the_cluster_and_nothing_beyond_the_machine(node: TestCluster):
    outside = json.loads(cluster._sh("ip", "-json", "route", "get", "192.0.2.1").stdout)[0]["prefsrc"]
    seen = json.loads(node.kubectl("exec", "probe", "--", "python3", "-c", CHECK, outside, namespace=NAMESPACE,
                                   timeout=120).stdout)
    pod_ip = node.get_json("pod", "probe", namespace=NAMESPACE)["status"]["podIP"]
    assert seen == {"api_by_service": True, "api_by_node": True, "resolver": False, "gateway": False,
                    "machine_outside_ip": False, "internet": False, "kubernetes": ["10.96.0.1"],
                    "external_name": [], "headless": [pod_ip]}


def test_a_claim_of_the_default_class_binds_and_a_non_root_pod_writes_to_it(node: TestCluster):
    claim = wait_for(lambda: node.get_json("pvc", "probe", namespace=NAMESPACE)["status"].get("phase") == "Bound"
                     and node.get_json("pvc", "probe", namespace=NAMESPACE), 60, "the claim to bind")
    assert claim["spec"]["storageClassName"] == "standard"
    node.kubectl("exec", "probe", "--", "sh", "-c", "echo kept > /data/file && cat /data/file", namespace=NAMESPACE)
    volume = node.get_json("pv", claim["spec"]["volumeName"])
    assert volume["spec"]["hostPath"]["path"].startswith(str(node.local_layout.volumes))
