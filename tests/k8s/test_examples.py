"""The RLExperiment examples and specs, on a real API server and in the config model.

Every manifest under examples/ must be accepted twice: by the API server (the CRD's structural
schema, defaults and CEL rules, with strict field validation) and by `kuberl run`
(kuberl.config), and both must fill in the same defaults. A bad spec must be refused by both,
each naming the same field.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from kuberl.config import CLUSTER_ONLY_FIELDS, ConfigError, load_manifest, parse_manifest, to_spec
from tests.conftest import REPO
from tests.kube import TestCluster

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CLUSTER_ONLY = CLUSTER_ONLY_FIELDS
NAMESPACE = "kuberl-schema-tests"


@pytest.fixture(scope="module")
def server(kube_cluster: TestCluster) -> TestCluster:
    kube_cluster.install_crd()
    kube_cluster.ensure_namespace(NAMESPACE)
    return kube_cluster


def manifest(spec: dict, name: str = "bad") -> dict:
    return {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def server_create(server: TestCluster, doc: dict):
    """What the API server makes of a create (dry run: nothing is stored)."""
    return server.kubectl("create", "--dry-run=server", "--validate=strict", "-o", "json", "-f", "-",
                          input=json.dumps(doc), check=False)


def stored_spec(server: TestCluster, doc: dict) -> dict:
    done = server_create(server, doc)
    assert done.returncode == 0, done.stderr
    return {k: v for k, v in json.loads(done.stdout)["spec"].items() if k not in CLUSTER_ONLY}


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/*.yaml: no manifests found"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted_by_the_api_server_and_the_config_alike(server: TestCluster, path: Path) -> None:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    doc["metadata"]["namespace"] = NAMESPACE
    experiment = load_manifest(path)
    assert experiment.name == doc["metadata"]["name"]
    # What the API server stores (CRD defaults) is what `kuberl run` uses (config defaults).
    assert stored_spec(server, doc) == to_spec(experiment.config)


def test_the_api_server_and_the_config_default_an_empty_spec_alike(server: TestCluster) -> None:
    done = server_create(server, manifest({}, name="empty"))
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)["spec"]
    assert (spec.pop("suspend"), spec.pop("stopped"), spec.pop("bufferStorage")) == (False, False, {"size": "1Gi"})
    assert spec == to_spec(parse_manifest(manifest({}, name="empty")).config)


BASE = {"buffer": {"capacity": 1000}, "learner": {"batchSize": 32}}


def _with(path: str, value: object) -> dict:
    spec = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return spec


INVALID = {
    "batchSize > capacity": _with("learner.batchSize", 1001),
    "epsilonEnd > epsilonStart": {"exploration": {"epsilonStart": 0.5, "epsilonEnd": 0.6}},
    "environment.replicas -1": _with("environment.replicas", -1),
    "buffer.replicas 0": _with("buffer.replicas", 0),
    "unknown field in a section": _with("learner.momentum", 0.9),
    "unknown top-level spec field": _with("optimizer", "adam"),
    "wrong type: string for an integer": _with("buffer.capacity", "1000"),
    "wrong type: boolean for a number": _with("learner.gamma", True),
    "wrong type: section is a list": _with("stop", [1, 2]),
    "hiddenSizes of length 9": _with("learner.hiddenSizes", [8] * 9),
    "hiddenSizes empty": _with("learner.hiddenSizes", []),
    "dueling not a boolean": _with("learner.dueling", "yes"),
    "envKwargs not an object": _with("envKwargs", [1, 2]),
    "image with a space": _with("image", "my image"),
    "hiddenSizes width 0": _with("learner.hiddenSizes", [64, 0]),
    "epsilonDecay 0 (exclusive minimum)": _with("exploration.epsilonDecay", 0.0),
    "learningRate above 1": _with("learner.learningRate", 1.5),
    "seed above 2**32-1": _with("seed", 2**32),
    "empty envId": _with("envId", ""),
    "samplesPerInsert 0": _with("learner.samplesPerInsert", 0),
    "suspend not a boolean": _with("suspend", "yes"),
    "negative ttl": _with("ttlSecondsAfterFinished", -1),
    "batchSize x batchesPerSample over a shard's rows": {"buffer": {"capacity": 100_000},
                                                         "learner": {"batchSize": 65_536, "batchesPerSample": 32}},
    "bufferStorage size not a quantity": _with("bufferStorage.size", "lots"),
    "placement priorityClassName not a name": _with("placement.priorityClassName", "Not_Valid"),
}


@pytest.mark.parametrize("spec", INVALID.values(), ids=INVALID.keys())
def test_invalid_spec_is_refused_by_both_naming_the_field(server: TestCluster, spec: dict) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_manifest(manifest(spec))
    field = refused.value.path.split("[")[0]
    done = server_create(server, manifest(spec))
    assert done.returncode != 0, f"the API server accepted {spec}"
    assert field in done.stderr, f"the API server's refusal does not name {field}: {done.stderr}"


@pytest.mark.parametrize("name", ["9lives", "a" * 46, "under_score"])
def test_a_name_the_services_cannot_carry_is_refused_by_both(server: TestCluster, name: str) -> None:
    with pytest.raises(ConfigError, match="metadata.name"):
        parse_manifest(manifest({}, name=name))
    done = server_create(server, manifest({}, name=name))
    assert done.returncode != 0 and "metadata.name" in done.stderr, done.stderr


EDGES = {
    "batchSize == capacity": _with("learner.batchSize", 1000),
    "epsilonEnd == epsilonStart": {"exploration": {"epsilonStart": 0.3, "epsilonEnd": 0.3}},
    "no actors (environment.replicas 0)": _with("environment.replicas", 0),
    "suspended with a ttl": {**BASE, "suspend": True, "ttlSecondsAfterFinished": 60},
    "targetReturn set": _with("stop.targetReturn", 200.5),
    "integer for a number": _with("learner.samplesPerInsert", 4),
    "one hidden layer": _with("learner.hiddenSizes", [16]),
    "eight hidden layers, dueling off, 3-step returns": {**BASE, "learner": {"batchSize": 32, "hiddenSizes": [8] * 8,
                                                                              "dueling": False, "nStep": 3}},
    "envKwargs, nested": {**BASE, "envKwargs": {"sutton_barto_reward": True, "shape": {"w": [1, 2.5], "x": None}}},
    "prioritized replay and an image of one's own": {**BASE, "buffer": {"capacity": 1000, "prioritized": True,
                                                                        "priorityExponent": 0.5},
                                                     "image": "registry.example.com/me/kuberl-envs:1"},
    "placed, with its own claims and resources": {
        **BASE, "bufferStorage": {"size": "5Gi", "storageClassName": "local-path"},
        "placement": {"nodeSelector": {"kubernetes.io/os": "linux"}, "priorityClassName": "batch",
                      "tolerations": [{"key": "gpu", "operator": "Exists"}], "imagePullSecrets": ["registry"],
                      "affinity": {"nodeAffinity": {}}},
        "resources": {"learner": {"requests": {"cpu": 2, "memory": "2Gi"}}}},
}


@pytest.mark.parametrize("spec", EDGES.values(), ids=EDGES.keys())
def test_edge_values_are_accepted_by_both_alike(server: TestCluster, spec: dict) -> None:
    config = parse_manifest(manifest(spec, name="edge")).config
    assert stored_spec(server, manifest(spec, name="edge")) == to_spec(config)
