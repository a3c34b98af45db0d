"""The RLExperiment CustomResourceDefinition, generated from the one config model.

Defaults, bounds and descriptions come from `kuberl.config`, so the API server refuses and
defaults exactly what `kuberl run` refuses and defaults. `python -m kuberl.crd` rewrites
charts/kuberl/crds/; tests/k8s/test_crd.py fails while the checked-in file is stale.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from kuberl.config import (API_GROUP, DNS_SUBDOMAIN, EXPERIMENT_NAME, IMAGE_REFERENCE, KIND, MAX_HIDDEN_LAYERS,
                           MAX_NAME_LENGTH, POD_ROLES, STORAGE_SIZE, BufferStorage, ExperimentConfig, Placement, _camel, to_spec)
from kuberl.lifecycle import Phase
from kuberl.sizes import MAX_SAMPLE_ROWS

PLURAL = "rlexperiments"
SHORT_NAME = "rlx"
VERSION = "v1alpha1"
CRD_PATH = Path(__file__).resolve().parents[2] / "charts" / "kuberl" / "crds" / f"{PLURAL}.{API_GROUP}.yaml"

# Rules that span fields: CEL, evaluated by the API server after defaulting.
CROSS_FIELD_RULES = {
    "": [{"rule": "self.learner.batchSize <= self.buffer.capacity",
          "message": "learner.batchSize must be <= buffer.capacity", "fieldPath": ".learner.batchSize"}],
    "learner": [{"rule": f"self.batchSize * self.batchesPerSample <= {MAX_SAMPLE_ROWS}",
                 "message": f"learner.batchSize x learner.batchesPerSample must be <= {MAX_SAMPLE_ROWS} "
                            "(the rows a shard answers one SampleBatch with)",
                 "fieldPath": ".batchesPerSample"}],
    "exploration": [{"rule": "self.epsilonEnd <= self.epsilonStart",
                     "message": "exploration.epsilonEnd must be <= exploration.epsilonStart",
                     "fieldPath": ".epsilonEnd"}],
}


def _scalar(hint: Any, meta: dict, default: Any) -> dict[str, Any]:
    if hint is str:
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
    elif hint is bool:
        schema = {"type": "boolean"}
    elif hint is int:
        schema = {"type": "integer", "format": "int64"}
    else:
        schema = {"type": "number"}
    if meta.get("minimum") is not None:
        schema["minimum"] = meta["minimum"]
        if meta.get("exclusive_minimum"):
            schema["exclusiveMinimum"] = True
    if meta.get("maximum") is not None:
        schema["maximum"] = meta["maximum"]
    if default is not None:
        schema["default"] = default
    return schema


def _section_schema(cls: type, path: str) -> dict[str, Any]:
    hints = get_type_hints(cls)
    properties: dict[str, Any] = {}
    instance = cls()
    for f in dataclasses.fields(cls):
        hint, meta, default = hints[f.name], dict(f.metadata), getattr(instance, f.name)
        name = _camel(f.name)
        if dataclasses.is_dataclass(hint):
            schema = _section_schema(hint, f"{path}.{name}".lstrip("."))
            # An omitted section gets every default. Not `{}`: the API server checks a default
            # against the section's CEL rules as written, before the defaults inside it apply.
            schema["default"] = to_spec(default)
        elif get_origin(hint) is dict:
            schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "default": dict(default)}
        elif get_origin(hint) is list:
            (item,) = get_args(hint)
            schema = {"type": "array", "items": _scalar(item, meta, None), "minItems": 1, "maxItems": MAX_HIDDEN_LAYERS,
                      "default": list(default)}
        else:
            optional = [a for a in get_args(hint) if a is not type(None)]
            schema = _scalar(optional[0] if optional else hint, meta, default)
        if meta.get("doc"):
            schema["description"] = meta["doc"]
        properties[name] = schema
    section: dict[str, Any] = {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0],
                               "properties": properties}
    rules = CROSS_FIELD_RULES.get(path)
    if rules:
        section["x-kubernetes-validations"] = rules
    return section


def spec_schema() -> dict[str, Any]:
    """The OpenAPI v3 schema of an RLExperiment's spec: the config model plus cluster-only knobs."""
    spec = _section_schema(ExperimentConfig, "")
    spec["description"] = "What to train and how; every field is optional."
    spec["properties"]["suspend"] = {
        "type": "boolean", "default": False,
        "description": "Pause: actors and learner scale to zero, the replay shards and their data stay."}
    spec["properties"]["stopped"] = {
        "type": "boolean", "default": False,
        "description": "End the experiment (phase Stopped): actors and learner scale to zero for good, its "
                       "results stay. Unlike suspend it is final; the experiment API's Stop sets it."}
    spec["properties"]["bufferStorage"] = {
        "type": "object", "description": (BufferStorage.__doc__ or "").strip(), "properties": {
            "size": {"type": "string", "default": BufferStorage.size, "pattern": f"^{STORAGE_SIZE.pattern}$",
                     "description": "Each claim's size; replay beyond it fails the shard's snapshots (logged)."},
            "storageClassName": {"type": "string", "pattern": f"^{DNS_SUBDOMAIN.pattern}$",
                                 "description": "The claims' StorageClass (default: the cluster's default)."}},
        "default": {"size": BufferStorage.size}}
    quantities = {"type": "object", "additionalProperties": {
        "anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}}
    spec["properties"]["resources"] = {
        "type": "object", "description": "Per role, the container's requests and limits (over the chart's "
                                         "experiments.resources).",
        "properties": {role: {"type": "object", "properties": {"requests": quantities, "limits": quantities}}
                       for role in POD_ROLES}}
    spec["properties"]["placement"] = {
        "type": "object", "description": (Placement.__doc__ or "").strip().replace("\n", " "), "properties": {
            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
            "tolerations": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "affinity": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "priorityClassName": {"type": "string", "pattern": f"^{DNS_SUBDOMAIN.pattern}$"},
            "imagePullSecrets": {"type": "array", "items": {"type": "string"},
                                 "description": "Names of Secrets to pull the image with."}}}
    spec["properties"]["image"] = {
        "type": "string", "pattern": f"^{IMAGE_REFERENCE.pattern}$",
        "description": "The image of this experiment's actors, shards and learner, instead of the chart's: one "
                       "built FROM kuberl's with the user's environments installed (envId "
                       "\"package.module:Name-v0\" imports the module, which registers them)."}
    spec["properties"]["ttlSecondsAfterFinished"] = {
        "type": "integer", "format": "int64", "minimum": 0,
        "description": "Delete the experiment this many seconds after it succeeded, failed or was stopped."}
    return spec


def _replica_status(role: str) -> dict[str, Any]:
    return {"type": "object", "description": f"The {role} Deployment as observed.", "properties": {
        "replicas": {"type": "integer", "description": "Desired replicas (0 while suspended or finished)."},
        "readyReplicas": {"type": "integer", "description": "Replicas passing their readiness probe."},
        "selector": {"type": "string", "description": "Label selector of the pods (for the scale subresource)."}}}


def status_schema() -> dict[str, Any]:
    condition = {"type": "object", "required": ["type", "status"], "properties": {
        "type": {"type": "string"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "observedGeneration": {"type": "integer"},
        "lastTransitionTime": {"type": "string", "format": "date-time"}}}
    number = {"type": "number"}
    integer = {"type": "integer", "format": "int64"}
    return {"type": "object", "description": "What the operator observed; written by it only.", "properties": {
        "phase": {"type": "string", "enum": [phase.value for phase in Phase],
                  "description": "Summary of the conditions."},
        "message": {"type": "string"},
        "observedGeneration": integer,
        "conditions": {"type": "array", "items": condition, "x-kubernetes-list-type": "map",
                       "x-kubernetes-list-map-keys": ["type"]},
        "startTime": {"type": "string", "format": "date-time"},
        "completionTime": {"type": "string", "format": "date-time"},
        "envSteps": integer, "episodes": integer, "updates": integer, "policyVersion": integer,
        "meanReturn": number, "evalReturn": number,
        "result": {"type": "object", "description": "The version the experiment leaves as its result (the best "
                   "evaluated one, kept by the policy role) and its mean greedy return over `episodes` fresh "
                   "episodes.", "properties": {"policyVersion": integer, "meanReturn": number, "episodes": integer}},
        "environment": _replica_status("environment"), "buffer": _replica_status("buffer"),
        "learner": _replica_status("learner")}}


def crd_manifest() -> dict[str, Any]:
    # Each column is one status (or spec) field, named in its description: what runs, not what
    # was asked for (a suspended run shows 0 actors).
    columns = [
        ("Phase", "string", ".status.phase", "Summary of the conditions."),
        ("Env", "string", ".spec.envId", "Gymnasium environment id."),
        ("Actors", "integer", ".status.environment.readyReplicas", "Ready environment (actor) replicas."),
        ("Shards", "integer", ".status.buffer.readyReplicas", "Ready replay-buffer shards."),
        ("Steps", "integer", ".status.envSteps", "Environment steps so far."),
        ("Return", "number", ".status.meanReturn", "Mean training return of the last 100 episodes."),
        ("Eval", "number", ".status.evalReturn", "Mean greedy return of the latest evaluation."),
        ("Result", "number", ".status.result.meanReturn", "Mean greedy return of the result version."),
        ("Age", "date", ".metadata.creationTimestamp", "Time since the experiment was created.")]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}",
                     "labels": {"app.kubernetes.io/name": "kuberl", "app.kubernetes.io/part-of": "kuberl"}},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": KIND.lower(),
                      "shortNames": [SHORT_NAME], "categories": ["kuberl"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "description": "A reinforcement-learning experiment: actors, replay shards "
                                                     "and a Double DQN learner.",
                    "required": ["spec"],
                    "x-kubernetes-validations": [{
                        "rule": f"self.metadata.name.matches('^{EXPERIMENT_NAME.pattern}$')",
                        "message": f"metadata.name must start with a lower-case letter and have at most "
                                   f"{MAX_NAME_LENGTH} lower-case letters, digits or '-': the experiment's "
                                   f"Services are named after it"}],
                    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                   "metadata": {"type": "object"}, "spec": spec_schema(),
                                   "status": status_schema()}}},
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.environment.replicas",
                    "statusReplicasPath": ".status.environment.readyReplicas",
                    "labelSelectorPath": ".status.environment.selector"}},
                "additionalPrinterColumns": [{"name": n, "type": t, "jsonPath": p, "description": d}
                                             for n, t, p, d in columns],
            }],
        },
    }


class _NoAliases(yaml.SafeDumper):
    # Shared sub-schemas would otherwise come out as YAML anchors, which many tools mishandle.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    return ("# Generated by `python -m kuberl.crd` from services/kuberl/config.py; do not edit.\n"
            + yaml.dump(crd_manifest(), Dumper=_NoAliases, sort_keys=False, width=120))


def main() -> int:
    CRD_PATH.parent.mkdir(parents=True, exist_ok=True)
    CRD_PATH.write_text(render())
    print(CRD_PATH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
