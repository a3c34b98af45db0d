"""Desired children of an RLExperiment, as pure functions of its spec (no API server here).

An experiment owns a ConfigMap with its manifest, an environment Deployment
(spec.environment.replicas actors), a buffer StatefulSet (spec.buffer.replicas shards, each with a
PersistentVolumeClaim of its own, so that a rescheduled shard keeps its replay), a learner
Deployment, and a headless Service for each so that DNS returns every replica. Handlers only
apply what these functions return.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from kuberl.roles import DEFAULT_PORTS
from kuberl.config import (CLUSTER_ONLY_FIELDS, BufferStorage, ExperimentConfig, Manifest, Placement,
                           check_cluster_fields, from_spec, role_resources)
from kuberl.lifecycle import EXPERIMENT_ROLES as ROLES
from kuberl.lifecycle import Intent, Phase, desired_replicas
CONFIG_FILE = "experiment.yaml"
CONFIG_MOUNT = "/etc/kuberl"
DATA_MOUNT = "/var/lib/kuberl"
TLS_MOUNT = "/etc/kuberl-tls"  # as the chart's roles; not under CONFIG_MOUNT, the ConfigMap's volume
HEALTH_PORT = 8081
EXPERIMENT_LABEL = "kuberl.dev/experiment"
CONFIG_HASH_ANNOTATION = "kuberl.dev/config-hash"
# The digest of the desired object last applied: a child carrying the current one is left alone.
APPLIED_HASH_ANNOTATION = "kuberl.dev/applied-hash"
# Requests and limits of each child role's container when the chart sets none.
DEFAULT_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
# The shards keep their replay on claims; the others' data directories are bounded scratch.
STATEFUL_ROLES = ("buffer",)
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
SCRATCH_LIMIT = "256Mi"


@dataclass(frozen=True)
class Settings:
    """How children are made: the operator's environment, set by the Helm chart."""

    image: str = "kuberl:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    policy_address: str = "kuberl-policy:50056"
    analytics_address: str = "kuberl-analytics:50052"
    part_of: str = "kuberl"
    cluster_domain: str = "cluster.local"
    # role -> container resources; a role not named gets DEFAULT_RESOURCES.
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where children may run unless their spec says otherwise (the chart's experiments.placement).
    placement: Placement = field(default_factory=Placement)
    # A NetworkPolicy per experiment (the chart's networkPolicy.enabled), admitting the operator
    # from its namespace.
    network_policies: bool = False
    operator_namespace: str = "kuberl"
    # The CA that signs each experiment's certificates (the chart's CA Secret, mounted): with it
    # children serve mutual TLS; without it, plaintext (--insecure).
    ca_dir: str | None = None

    @property
    def child_tls(self) -> bool:
        return self.ca_dir is not None
    # Restarts of a crash-looping container after which the run fails.
    crash_loop_restart_limit: int = 10
    # Where every child serves Prometheus metrics (the chart's metrics.port); None: nowhere.
    metrics_port: int | None = None
    # How often status is observed and children re-applied (the chart's
    # operator.observationIntervalSeconds): status lags the roles by up to this.
    observation_seconds: float = 5.0

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        default = cls()
        resources = json.loads(env.get("KUBERL_CHILD_RESOURCES") or "{}")
        unknown = set(resources) - set(ROLES)
        if unknown:
            raise ValueError(f"KUBERL_CHILD_RESOURCES: unknown roles {sorted(unknown)}; roles are {list(ROLES)}")
        placement = Placement.from_spec(json.loads(env.get("KUBERL_CHILD_PLACEMENT") or "{}"),
                                        "KUBERL_CHILD_PLACEMENT")
        observation = env.get("KUBERL_OPERATOR_TIMER_SECONDS", str(default.observation_seconds))
        try:
            observation_seconds = float(observation)
        except ValueError:
            observation_seconds = float("nan")
        if not 0 < observation_seconds < float("inf"):
            raise ValueError(f"KUBERL_OPERATOR_TIMER_SECONDS: {observation!r} is not a positive number of seconds")
        return cls(image=env.get("KUBERL_IMAGE", default.image),
                   image_pull_policy=env.get("KUBERL_IMAGE_PULL_POLICY", default.image_pull_policy),
                   policy_address=env.get("KUBERL_POLICY_ADDRESS", default.policy_address),
                   analytics_address=env.get("KUBERL_ANALYTICS_ADDRESS", default.analytics_address),
                   part_of=env.get("KUBERL_PART_OF", default.part_of),
                   cluster_domain=env.get("KUBERL_CLUSTER_DOMAIN", default.cluster_domain),
                   resources=resources, placement=placement,
                   network_policies=env.get("KUBERL_NETWORK_POLICIES", "") == "1",
                   operator_namespace=env.get("KUBERL_OPERATOR_NAMESPACE", default.operator_namespace),
                   ca_dir=env.get("KUBERL_CA_DIR") or None,
                   metrics_port=int(env["KUBERL_METRICS_PORT"]) if env.get("KUBERL_METRICS_PORT") else None,
                   crash_loop_restart_limit=int(env.get("KUBERL_CRASH_LOOP_RESTART_LIMIT",
                                                        default.crash_loop_restart_limit)),
                   observation_seconds=observation_seconds)


@dataclass(frozen=True)
class Experiment:
    """What the builders need of an RLExperiment object."""

    name: str
    namespace: str
    config: ExperimentConfig
    suspend: bool = False
    stopped: bool = False
    uid: str = ""
    buffer_storage: BufferStorage = field(default_factory=BufferStorage)
    placement: Placement = field(default_factory=Placement)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> over the chart's
    image: str = ""  # the experiment's own image (environments from the user's packages); "": the chart's

    @classmethod
    def from_body(cls, name: str, namespace: str, spec: dict[str, Any], uid: str = "") -> Experiment:
        """Raises kuberl.config.ConfigError (naming the field) for an invalid spec."""
        spec = dict(spec or {})
        check_cluster_fields(spec)
        suspend, stopped = spec.get("suspend", False), spec.get("stopped", False)
        storage = BufferStorage.from_spec(spec.get("bufferStorage"))
        placement, resources = Placement.from_spec(spec.get("placement")), role_resources(spec.get("resources"))
        image = spec.get("image") or ""
        for key in CLUSTER_ONLY_FIELDS:
            spec.pop(key, None)
        return cls(name, namespace, from_spec(spec), suspend, stopped, uid, storage, placement, resources, image)

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.name, self.namespace, self.config, self.uid)

    @property
    def experiment_id(self) -> str:
        """What the roles know it by (kuberl.config.scoped_experiment_id)."""
        return self.manifest.experiment_id

    @property
    def intent(self) -> Intent:
        return Intent(self.config, suspend=self.suspend, stop=self.stopped)

    def child_name(self, role: str) -> str:
        return f"{self.name}-{role}"

    def address(self, role: str, settings: Settings) -> str:
        """The headless Service's DNS name: it resolves to every ready-or-not replica."""
        return f"{self.child_name(role)}.{self.namespace}.svc.{settings.cluster_domain}:{DEFAULT_PORTS[role]}"


def labels(exp: Experiment, role: str, settings: Settings) -> dict[str, str]:
    return {"app.kubernetes.io/name": "kuberl", "app.kubernetes.io/instance": exp.name,
            "app.kubernetes.io/component": role, "app.kubernetes.io/part-of": settings.part_of,
            "app.kubernetes.io/managed-by": "kuberl-operator", EXPERIMENT_LABEL: exp.name}


def selector_labels(exp: Experiment, role: str) -> dict[str, str]:
    # Only labels that never change: a Deployment's selector is immutable.
    return {EXPERIMENT_LABEL: exp.name, "app.kubernetes.io/component": role}


def selector_string(exp: Experiment, role: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(exp, role).items())


def experiment_selector(exp: Experiment) -> str:
    """Every child and pod of the experiment."""
    return f"{EXPERIMENT_LABEL}={exp.name}"


def manifest_text(exp: Experiment) -> str:
    return exp.manifest.manifest_text()


def config_hash(exp: Experiment) -> str:
    return hashlib.sha256(manifest_text(exp).encode()).hexdigest()[:16]


def build_configmap(exp: Experiment, settings: Settings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": exp.child_name("config"), "namespace": exp.namespace,
                         "labels": labels(exp, "config", settings)},
            "data": {CONFIG_FILE: manifest_text(exp)}}


def certificate_secret_name(exp: Experiment, role: str) -> str:
    return exp.child_name(f"{role}-tls")


def build_certificate_secret(exp: Experiment, role: str, settings: Settings, data: dict[str, bytes]
                             ) -> dict[str, Any]:
    """A role's identity for this experiment (kuberl.security.identity_pem's files) as a
    kubernetes.io/tls Secret its pods mount."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": certificate_secret_name(exp, role), "namespace": exp.namespace,
                         "labels": labels(exp, f"{role}-tls", settings)},
            "data": {name: base64.b64encode(value).decode() for name, value in data.items()}}


def _container(exp: Experiment, role: str, settings: Settings) -> dict[str, Any]:
    port = DEFAULT_PORTS[role]
    # The kubelet presents no certificate: probes go to the health-only plaintext port.
    probe = {"grpc": {"port": HEALTH_PORT}, "periodSeconds": 10, "timeoutSeconds": 5}
    identity = ["--tls-dir", TLS_MOUNT] if settings.child_tls else ["--insecure"]
    mounts = [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
              {"name": "data", "mountPath": DATA_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}]
    if settings.child_tls:
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
    metrics = ([] if settings.metrics_port is None else ["--metrics-port", str(settings.metrics_port)])
    ports = [{"name": "grpc", "containerPort": port, "protocol": "TCP"}]
    if settings.metrics_port is not None:
        ports.append({"name": "metrics", "containerPort": settings.metrics_port, "protocol": "TCP"})
    return {
        "name": role,
        "image": exp.image or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["serve", role, *identity, "--health-port", str(HEALTH_PORT), "--port", str(port),
                 "--experiment", f"{CONFIG_MOUNT}/{CONFIG_FILE}",
                 "--buffer", exp.address("buffer", settings), "--policy", settings.policy_address,
                 "--analytics", settings.analytics_address, "--data-dir", DATA_MOUNT, *metrics],
        "env": [{"name": "KUBERL_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "OPENBLAS_NUM_THREADS", "value": "1"}],
        "ports": ports,
        "readinessProbe": {**probe, "periodSeconds": 3, "initialDelaySeconds": 1},
        "livenessProbe": {**probe, "initialDelaySeconds": 10, "failureThreshold": 6},
        "resources": exp.resources.get(role) or settings.resources.get(role, DEFAULT_RESOURCES),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }


def workload_kind(role: str) -> str:
    return "StatefulSet" if role in STATEFUL_ROLES else "Deployment"


def build_workload(exp: Experiment, role: str, settings: Settings, phase: Phase) -> dict[str, Any]:
    """The Deployment (StatefulSet for the shards) of one role, sized for the phase. Actors restart
    on any config change (the hash annotation); shards and the learner re-read their mounted
    config instead, so replay and optimiser survive."""
    annotations = {CONFIG_HASH_ANNOTATION: config_hash(exp)} if role == "environment" else {}
    volumes = [{"name": "config", "configMap": {"name": exp.child_name("config")}},
               {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    if role not in STATEFUL_ROLES:
        # emptyDir outlives container restarts: a crashed role finds its files again.
        volumes.insert(1, {"name": "data", "emptyDir": {"sizeLimit": SCRATCH_LIMIT}})
    if settings.child_tls:
        volumes.append({"name": "tls", "secret": {"secretName": certificate_secret_name(exp, role)}})
    spec: dict[str, Any] = {
        "replicas": desired_replicas(exp.intent, phase)[role],
        "selector": {"matchLabels": selector_labels(exp, role)},
        "template": {
            "metadata": {"labels": labels(exp, role, settings), "annotations": annotations},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": 30,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                    "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [_container(exp, role, settings)],
                "volumes": volumes,
                **exp.placement.over(settings.placement).pod_fields(),
            },
        },
    }
    if role in STATEFUL_ROLES:
        claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": exp.buffer_storage.size}}}
        if exp.buffer_storage.storage_class_name:
            claim["storageClassName"] = exp.buffer_storage.storage_class_name
        spec.update({
            "serviceName": exp.child_name(role),
            # Shards are peers, not a sequence: start and stop them all at once.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": selector_labels(exp, role)},
                                      "spec": claim}],
            # A shard scaled away keeps its claim (scaled back, it has its replay again); the claims
            # go with the experiment, so a re-created one never restores an old one's replay.
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Retain", "whenDeleted": "Delete"},
        })
    else:
        # Two learners would train apart; actors replaced a few at a time keep stepping.
        spec["strategy"] = {"type": "Recreate"} if role == "learner" else {"type": "RollingUpdate"}
    return {"apiVersion": "apps/v1", "kind": workload_kind(role),
            "metadata": {"name": exp.child_name(role), "namespace": exp.namespace, "labels": labels(exp, role, settings)},
            "spec": spec}


def build_headless_service(exp: Experiment, role: str, settings: Settings) -> dict[str, Any]:
    ports = [{"name": "grpc", "port": DEFAULT_PORTS[role], "targetPort": "grpc", "protocol": "TCP"}]
    if settings.metrics_port is not None:  # what the chart's ServiceMonitor scrapes
        ports.append({"name": "metrics", "port": settings.metrics_port, "targetPort": "metrics", "protocol": "TCP"})
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": exp.child_name(role), "namespace": exp.namespace, "labels": labels(exp, role, settings)},
        "spec": {
            "clusterIP": "None",
            # A shard restoring its snapshot is discoverable before it is ready; clients treat
            # a replica that does not answer as absent.
            "publishNotReadyAddresses": True,
            "selector": selector_labels(exp, role),
            "ports": ports,
        },
    }


def _port(port: int) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"}]


def build_network_policy(exp: Experiment, settings: Settings) -> dict[str, Any]:
    """Who may reach this experiment's pods, by name: its shards from its own actors and learner;
    its shards and learner from the operator (status, releases). Nothing else, so another
    experiment's pods (or any pod that calls itself kuberl) reach none of them; the kubelet's
    probes are node traffic."""
    operator = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings.operator_namespace}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator",
                                                "app.kubernetes.io/part-of": settings.part_of}}}
    own = {"podSelector": {"matchLabels": {EXPERIMENT_LABEL: exp.name, "app.kubernetes.io/part-of": settings.part_of},
                           "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In",
                                                 "values": ["environment", "learner"]}]}}
    ingress = [{"from": [own, operator], "ports": _port(DEFAULT_PORTS["buffer"])},
               {"from": [operator], "ports": _port(DEFAULT_PORTS["learner"])}]
    if settings.metrics_port is not None:  # read-only figures, for whichever Prometheus the cluster runs
        ingress.append({"ports": _port(settings.metrics_port)})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": exp.child_name("network"), "namespace": exp.namespace,
                     "labels": labels(exp, "network", settings)},
        "spec": {"podSelector": {"matchLabels": {EXPERIMENT_LABEL: exp.name}}, "policyTypes": ["Ingress"],
                 "ingress": ingress},
    }


def desired_children(exp: Experiment, settings: Settings, phase: Phase) -> list[dict[str, Any]]:
    """Everything the experiment owns in this phase, ConfigMap first (the pods mount it)."""
    children = [build_configmap(exp, settings)]
    if settings.network_policies:
        children.append(build_network_policy(exp, settings))
    for role in ROLES:
        children.append(build_headless_service(exp, role, settings))
        children.append(build_workload(exp, role, settings, phase))
    return children


@dataclass(frozen=True)
class ChildPlan:
    create: list[dict[str, Any]]  # absent: create
    apply: list[dict[str, Any]]  # ours but not as desired: server-side apply
    taken: list[str]  # a child's name held by an object of somebody else's: leave it, say so
    delete: list[dict[str, Any]] = field(default_factory=list)  # ours but no longer desired (an older layout's)


def _digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def owned_by(obj: dict[str, Any], owner_uid: str) -> bool:
    """Whether a live object names this owner in its ownerReferences."""
    return owner_uid in {ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or []}


def plan_children(desired: list[dict[str, Any]], live: list[dict[str, Any]], owner_uid: str) -> ChildPlan:
    """What to do so that the live children are the desired ones, touching nothing that is right
    (a restarted operator changes nothing) and nothing that is not ours.

    `desired` carry their owner reference already; `live` are the objects listed by the
    experiment's label. A child is re-applied when the desired object changed since it was
    applied (the digest annotation) or, for workloads, when someone changed its replicas. A live
    child of ours that is not desired (the shards' Deployment of an older operator) is deleted."""
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in live}
    wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
    delete = [o for key, o in by_key.items() if key not in wanted and owned_by(o, owner_uid)]
    create, apply, taken = [], [], []
    for child in desired:
        digest = _digest(child)
        child.setdefault("metadata", {}).setdefault("annotations", {})[APPLIED_HASH_ANNOTATION] = digest
        current = by_key.get((child["kind"], child["metadata"]["name"]))
        if current is None:
            create.append(child)
            continue
        if not owned_by(current, owner_uid):
            taken.append(f"{child['kind']} {child['metadata']['name']} exists and is not this experiment's")
            continue
        applied = (current["metadata"].get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)
        scaled = child["kind"] in WORKLOAD_KINDS and current["spec"].get("replicas") != child["spec"]["replicas"]
        if applied != digest or scaled:
            apply.append(child)
    return ChildPlan(create, apply, taken, delete)
