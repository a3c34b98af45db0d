"""The RLExperiment examples, and the CRD's schema against the config model it is generated from.

Every manifest under examples/ must be accepted twice: by the API server (the CRD's structural
schema and CEL rules, applied offline by tests/tools.py) and by `kuberl run` (kuberl.config).
Bad specs must be refused by both, and the defaults both fill in must agree.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from kuberl.config import ConfigError, load_manifest, parse_manifest, to_spec
from tests import tools

REPO = Path(__file__).resolve().parents[2]
CRD_PATH = REPO / "charts" / "kuberl" / "crds" / "rlexperiments.kuberl.dev.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CLUSTER_ONLY = ("suspend", "ttlSecondsAfterFinished")


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def manifest(spec: dict, name: str = "bad") -> dict:
    return {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}  # fmt: skip


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/*.yaml: no manifests found"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_custom_resource_and_config(crd: dict, path: Path) -> None:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    defaulted = tools.validate_custom_resource(crd, doc)
    experiment = load_manifest(path)
    assert experiment.name == doc["metadata"]["name"]
    # What the API server stores (CRD defaults) is what `kuberl run` uses (config defaults).
    stored = {k: v for k, v in defaulted["spec"].items() if k not in CLUSTER_ONLY}
    assert stored == to_spec(experiment.config)


def test_crd_and_config_default_an_empty_spec_alike(crd: dict) -> None:
    defaulted = tools.validate_custom_resource(crd, manifest({}, name="empty"))
    stored = {k: v for k, v in defaulted["spec"].items() if k not in CLUSTER_ONLY}
    assert stored == to_spec(parse_manifest(manifest({}, name="empty")).config)
    assert defaulted["spec"]["suspend"] is False


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
    "hiddenSizes of length 3": _with("learner.hiddenSizes", [64, 64, 64]),
    "hiddenSizes of length 1": _with("learner.hiddenSizes", [64]),
    "hiddenSizes width 0": _with("learner.hiddenSizes", [64, 0]),
    "epsilonDecay 0 (exclusive minimum)": _with("exploration.epsilonDecay", 0.0),
    "learningRate above 1": _with("learner.learningRate", 1.5),
    "seed above 2**32-1": _with("seed", 2**32),
    "empty envId": _with("envId", ""),
    "samplesPerInsert 0": _with("learner.samplesPerInsert", 0),
}


@pytest.mark.parametrize("spec", INVALID.values(), ids=INVALID.keys())
def test_invalid_spec_is_refused_by_the_crd_and_by_the_config(crd: dict, spec: dict) -> None:
    with pytest.raises(tools.ValidationFailed):
        tools.validate_custom_resource(crd, manifest(spec))
    with pytest.raises(ConfigError):
        parse_manifest(manifest(spec))


EDGES = {
    "batchSize == capacity": _with("learner.batchSize", 1000),
    "epsilonEnd == epsilonStart": {"exploration": {"epsilonStart": 0.3, "epsilonEnd": 0.3}},
    "no actors (environment.replicas 0)": _with("environment.replicas", 0),
    "suspended with a ttl": {**BASE, "suspend": True, "ttlSecondsAfterFinished": 60},
    "targetReturn set": _with("stop.targetReturn", 200.5),
    "integer for a number": _with("learner.samplesPerInsert", 4),
}


@pytest.mark.parametrize("spec", EDGES.values(), ids=EDGES.keys())
def test_edge_values_are_accepted_by_both(crd: dict, spec: dict) -> None:
    defaulted = tools.validate_custom_resource(crd, manifest(spec, name="edge"))
    config = parse_manifest(manifest(spec, name="edge")).config
    stored = {k: v for k, v in defaulted["spec"].items() if k not in CLUSTER_ONLY}
    assert stored == to_spec(config)
