"""The one typed experiment config, shared by the CLI, the RLExperiment spec and every role.

Each knob is a dataclass field with its default, bounds and a docstring in its metadata, so
that one description serves every reader: `from_spec` (manifest camelCase dict -> config,
refusing bad input with the field's path) and the protobuf `ExperimentConfig` message
(`to_proto` / `from_proto`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from kuberl.v1 import common_pb2

API_GROUP = "kuberl.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "RLExperiment"
MAX_HIDDEN_LAYERS = 8


class ConfigError(ValueError):
    """A config or manifest value that cannot be used; the message starts with the field's path."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def knob(default: Any, doc: str, *, minimum: float | None = None, maximum: float | None = None,
         exclusive_minimum: bool = False) -> Any:
    """A config field: its default, its documentation and its bounds."""
    meta = {"doc": doc, "minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class EnvironmentSpec:
    """The actors (the environment role)."""

    replicas: int = knob(1, "Environment (actor) replicas.", minimum=0, maximum=256)
    envs_per_replica: int = knob(8, "Vectorised environments each actor steps at once.", minimum=1, maximum=4096)
    max_episode_steps: int = knob(500, "Steps after which an episode is truncated.", minimum=1, maximum=1_000_000)
    step_delay_seconds: float = knob(0.0, "Artificial delay per vector step (the seed's 5 ms); 0 for none.",
                                     minimum=0.0, maximum=10.0)
    policy_refresh_steps: int = knob(50, "Vector steps between checks for newer policy weights.",
                                     minimum=1, maximum=1_000_000)
    push_batch_size: int = knob(256, "Transitions per TransitionBatch pushed to a buffer shard.",
                                minimum=1, maximum=65_536)


@dataclass(frozen=True)
class ExplorationSpec:
    """Epsilon-greedy exploration; epsilon decays once per finished episode."""

    epsilon_start: float = knob(1.0, "Initial probability of a random action.", minimum=0.0, maximum=1.0)
    epsilon_end: float = knob(0.05, "Floor of the exploration probability.", minimum=0.0, maximum=1.0)
    epsilon_decay: float = knob(0.995, "Multiplier applied to epsilon after each episode.",
                                minimum=0.0, maximum=1.0, exclusive_minimum=True)


@dataclass(frozen=True)
class BufferSpec:
    """The replay shards (the buffer role)."""

    replicas: int = knob(1, "Replay buffer shards.", minimum=1, maximum=256)
    capacity: int = knob(10_000, "Transitions each shard keeps (FIFO).", minimum=1, maximum=100_000_000)
    snapshot_interval_seconds: float = knob(10.0, "Seconds between .npz snapshots of a shard; 0 disables them.",
                                            minimum=0.0, maximum=86_400.0)
    prioritized: bool = knob(False, "Prioritized replay across the shards: rows drawn in proportion to their "
                                    "TD error ** priorityExponent, the learner sending new priorities back.")
    priority_exponent: float = knob(0.6, "How much priorities count (alpha; 0 is uniform).", minimum=0.0,
                                    maximum=1.0)
    importance_exponent: float = knob(0.4, "How much the learner corrects the bias of prioritized draws "
                                           "(beta of the importance weights; 1 corrects it fully).",
                                      minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class LearnerSpec:
    """Double DQN (the learner role)."""

    batch_size: int = knob(32, "Transitions per gradient update, merged from every shard.", minimum=1, maximum=65_536)
    learning_rate: float = knob(1e-3, "Adam step size.", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    gamma: float = knob(0.99, "Discount factor.", minimum=0.0, maximum=1.0)
    hidden_sizes: list[int] = knob([64, 64], f"Widths of the Q-network's hidden layers (1 to {MAX_HIDDEN_LAYERS}).",
                                   minimum=1, maximum=4096)
    n_step: int = knob(1, "Env steps each transition spans: n-step returns, summed on the actors.",
                       minimum=1, maximum=32)
    dueling: bool = knob(True, "A dueling head: Q = V(s) + A(s, a) - mean A(s, .).")
    target_update_interval: int = knob(250, "Updates between copies of the online network into the target.",
                                       minimum=1, maximum=10_000_000)
    samples_per_insert: float = knob(8.0, "Sampled transitions per inserted transition (Reverb's rate limit).",
                                     minimum=0.0, maximum=1024.0, exclusive_minimum=True)
    learning_starts: int = knob(1_000, "Transitions inserted before the first update.", minimum=0,
                                maximum=100_000_000)
    max_grad_norm: float = knob(10.0, "Global gradient-norm clip.", minimum=0.0, maximum=1e6, exclusive_minimum=True)
    policy_push_interval: int = knob(50, "Updates between weight pushes to the policy role.",
                                     minimum=1, maximum=1_000_000)
    batches_per_sample: int = knob(8, "Batches fetched per SampleBatch round trip (one RPC per shard).",
                                   minimum=1, maximum=1024)


@dataclass(frozen=True)
class StopSpec:
    """When an experiment ends."""

    target_return: float | None = knob(None, "Greedy evaluation mean return that solves the task "
                                             "(default: the environment's reward threshold, 475 for CartPole-v1).")
    eval_episodes: int = knob(10, "Episodes per greedy evaluation.", minimum=1, maximum=1000)
    max_env_steps: int = knob(500_000, "Environment steps after which the experiment ends unsolved.",
                              minimum=1, maximum=10_000_000_000)
    eval_interval_updates: int = knob(1_000, "Updates between greedy evaluations.", minimum=1, maximum=10_000_000)
    confirm_episodes: int = knob(100, "Fresh episodes (other seeds) that must confirm an evaluation at the target "
                                      "before the run counts as solved; they score the result.",
                                 minimum=1, maximum=10_000)


@dataclass(frozen=True)
class ExperimentConfig:
    """Every knob of an experiment; an RLExperiment's spec in camelCase."""

    env_id: str = knob("CartPole-v1", "Gymnasium environment id; its action space must be Discrete.")
    env_kwargs: dict[str, Any] = knob({}, "Keyword arguments for gymnasium.make (a JSON object).")
    seed: int = knob(0, "Seed for networks, environments and sampling.", minimum=0, maximum=2**32 - 1)
    environment: EnvironmentSpec = field(default_factory=EnvironmentSpec)
    exploration: ExplorationSpec = field(default_factory=ExplorationSpec)
    buffer: BufferSpec = field(default_factory=BufferSpec)
    learner: LearnerSpec = field(default_factory=LearnerSpec)
    stop: StopSpec = field(default_factory=StopSpec)

    def replace(self, **sections: Any) -> ExperimentConfig:
        """A copy with some knobs changed: `cfg.replace(learner={"batch_size": 64})`."""
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            changes[name] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
        return dataclasses.replace(self, **changes)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _check_number(value: Any, kind: type, meta: dict, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(path, f"must be an integer, got {value!r}")
            value = int(value)
    else:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(path, f"must be a finite number, got {value!r}")
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None:
        if meta.get("exclusive_minimum") and value <= low:
            raise ConfigError(path, f"must be > {low}, got {value!r}")
        if value < low:
            raise ConfigError(path, f"must be >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(path, f"must be <= {high}, got {value!r}")
    return value


MAX_JSON_BYTES = 16 * 1024


def _check_json(value: Any, path: str) -> Any:
    """A JSON value (what a manifest and the wire can both carry), checked all the way down."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(path, f"keys must be non-empty strings, got {key!r}")
            _check_json(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"must be a finite number, got {value!r}")
    elif value is not None and not isinstance(value, (str, bool, int, float)):
        raise ConfigError(path, f"must be a JSON value, got {type(value).__name__}")
    return value


def _convert(value: Any, hint: Any, meta: dict, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, path)
    if get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a mapping (a JSON object), got {value!r}")
        _check_json(value, path)
        if len(json.dumps(value)) > MAX_JSON_BYTES:
            raise ConfigError(path, f"must be at most {MAX_JSON_BYTES} bytes as JSON")
        return copy.deepcopy(value)
    if get_origin(hint) is list:
        if not isinstance(value, list):
            raise ConfigError(path, f"must be a list, got {value!r}")
        (item,) = get_args(hint)
        if not value:
            raise ConfigError(path, "must not be empty")
        return [_convert(v, item, meta, f"{path}[{i}]") for i, v in enumerate(value)]
    args = [a for a in get_args(hint) if a is not type(None)]
    if args:  # Optional[X]
        return None if value is None else _convert(value, args[0], meta, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(path, f"must be a non-empty string, got {value!r}")
        return value
    return _check_number(value, hint, meta, path)


def _refuse_unknown(data: dict[str, Any], known: Any, path: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}", f"unknown field (known: {', '.join(sorted(known))})")


def _from_dict(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    by_camel = {_camel(f.name): f for f in dataclasses.fields(cls)}
    _refuse_unknown(data, by_camel, path)
    values = {}
    for key, f in by_camel.items():
        if key in data:
            values[f.name] = _convert(data[key], hints[f.name], dict(f.metadata), f"{path}.{key}")
    return cls(**values)


def _cross_field_checks(cfg: ExperimentConfig, path: str) -> None:
    if cfg.exploration.epsilon_end > cfg.exploration.epsilon_start:
        raise ConfigError(f"{path}.exploration.epsilonEnd",
                          f"must be <= epsilonStart ({cfg.exploration.epsilon_start}), got {cfg.exploration.epsilon_end}")
    if cfg.learner.batch_size > cfg.buffer.capacity:
        raise ConfigError(f"{path}.learner.batchSize",
                          f"must be <= buffer.capacity ({cfg.buffer.capacity}), got {cfg.learner.batch_size}")
    from kuberl.sizes import static_problems

    for field_path, message in static_problems(cfg):
        raise ConfigError(f"{path}.{field_path}", message)
    if not 1 <= len(cfg.learner.hidden_sizes) <= MAX_HIDDEN_LAYERS:
        raise ConfigError(f"{path}.learner.hiddenSizes",
                          f"must name 1 to {MAX_HIDDEN_LAYERS} hidden layers, got {cfg.learner.hidden_sizes}")


def from_spec(spec: Any, path: str = "spec") -> ExperimentConfig:
    """Builds a config from a manifest's spec (camelCase); unset fields take defaults."""
    cfg = _from_dict(ExperimentConfig, spec, path)
    _cross_field_checks(cfg, path)
    return cfg


def to_spec(cfg: Any) -> dict[str, Any]:
    """The camelCase dict form of a config (or of one of its sections), None values left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        out[_camel(f.name)] = to_spec(value) if dataclasses.is_dataclass(value) else (
            copy.deepcopy(value) if isinstance(value, (list, dict)) else value)
    return out


def to_proto(cfg: ExperimentConfig) -> common_pb2.ExperimentConfig:
    msg = common_pb2.ExperimentConfig()
    _fill_proto(cfg, msg)
    return msg


def _fill_proto(obj: Any, msg: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            _fill_proto(value, getattr(msg, f.name))
        elif isinstance(value, list):
            getattr(msg, f.name).extend(value)
        elif isinstance(value, dict):
            if value:  # JSON on the wire: protobuf has no field for an open object
                setattr(msg, f.name, json.dumps(value, sort_keys=True))
        else:
            setattr(msg, f.name, value)


def from_proto(msg: common_pb2.ExperimentConfig, path: str = "config") -> ExperimentConfig:
    """The config a message carries; unset fields take defaults, bad values raise ConfigError."""
    return from_spec(_proto_to_spec(ExperimentConfig, msg), path)


def _proto_to_spec(cls: type, msg: Any) -> dict[str, Any]:
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            if msg.HasField(f.name):
                out[_camel(f.name)] = _proto_to_spec(hint, getattr(msg, f.name))
        elif get_origin(hint) is list:
            if len(getattr(msg, f.name)):
                out[_camel(f.name)] = list(getattr(msg, f.name))
        elif get_origin(hint) is dict:
            if msg.HasField(f.name):
                try:
                    out[_camel(f.name)] = json.loads(getattr(msg, f.name))
                except ValueError as err:
                    raise ConfigError(f"config.{f.name}", f"must be a JSON object: {err}") from None
        elif msg.HasField(f.name):
            out[_camel(f.name)] = getattr(msg, f.name)
    return out


# --- manifests -----------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_UID = re.compile(r"[0-9a-f][-0-9a-f]{7,63}")
# An experiment's children are named "<name>-environment" and so on, and Service names are
# DNS-1035 labels (a letter first, at most 63 characters). The shards' StatefulSet "<name>-buffer"
# labels its revisions "<name>-buffer-<hash of up to 10>", a label value of at most 63: 45 fits.
MAX_NAME_LENGTH = 45
EXPERIMENT_NAME = re.compile(rf"[a-z]([-a-z0-9]{{0,{MAX_NAME_LENGTH - 2}}}[a-z0-9])?")


@dataclass(frozen=True)
class Manifest:
    """An RLExperiment manifest, validated: its name, namespace and config."""

    name: str
    namespace: str
    config: ExperimentConfig
    uid: str = ""  # the RLExperiment object's, in a cluster (the operator writes it into the file)

    @property
    def experiment_id(self) -> str:
        return scoped_experiment_id(self.namespace, self.name, self.uid)

    def manifest_text(self) -> str:
        """The experiment as a manifest, the file every role reads (`kuberl serve ROLE --experiment`)."""
        metadata = {"name": self.name, "namespace": self.namespace, **({"uid": self.uid} if self.uid else {})}
        return yaml.safe_dump({"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata,
                               "spec": to_spec(self.config)}, sort_keys=True)


UID_DIGITS = 8


def scoped_experiment_id(namespace: str, name: str, uid: str = "") -> str:
    """An experiment's identity on the wire, in the metrics store and in snapshot names:
    `NAMESPACE/NAME`, and in a cluster `NAMESPACE/NAME#UID8` (the first 8 hex digits of the
    object's uid), so that `team-a/cartpole` and `team-b/cartpole` are two experiments and a
    re-created `cartpole` is a new one. At most 124 characters (namespace 63, name 51).
    Experiments started through the experiment API in pool mode keep the id they were given."""
    scoped = f"{namespace}/{name}"
    return f"{scoped}#{uid.replace('-', '')[:UID_DIGITS]}" if uid else scoped


def names_of_experiment_id(experiment_id: str) -> tuple[str, str]:
    """(namespace, name) of an id scoped_experiment_id made; one given in pool mode has no
    namespace: ("", the id)."""
    namespace, _, name = experiment_id.rpartition("/")
    return namespace, name.partition("#")[0]


def parse_manifest(doc: Any) -> Manifest:
    """Validates an RLExperiment object (as loaded from YAML) and returns its name and config."""
    if not isinstance(doc, dict):
        raise ConfigError("(document)", "must be a mapping with apiVersion, kind, metadata and spec")
    if doc.get("apiVersion") != API_VERSION:
        raise ConfigError("apiVersion", f"must be {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        raise ConfigError("kind", f"must be {KIND!r}, got {doc.get('kind')!r}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise ConfigError("metadata", "must be a mapping with a name")
    name = metadata.get("name")
    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name):
        raise ConfigError("metadata.name", f"must be a lower-case letter followed by up to {MAX_NAME_LENGTH - 1} "
                                           f"lower-case letters, digits or '-' (not ending in '-'), got {name!r}")
    namespace = metadata.get("namespace", "default")
    if not isinstance(namespace, str) or not _DNS_LABEL.fullmatch(namespace):
        raise ConfigError("metadata.namespace", f"must be a DNS label, got {namespace!r}")
    uid = metadata.get("uid", "")
    if not isinstance(uid, str) or not _UID.fullmatch(uid or "0" * UID_DIGITS):
        raise ConfigError("metadata.uid", f"must be an object uid (hex digits and '-'), got {uid!r}")
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    if unknown:
        raise ConfigError(unknown[0], "unknown top-level field")
    if "spec" not in doc:
        raise ConfigError("spec", "is required")
    if not isinstance(doc["spec"] or {}, dict):
        raise ConfigError("spec", f"must be a mapping, got {doc['spec']!r}")
    spec = dict(doc["spec"] or {})
    check_cluster_fields(spec)
    # Cluster-only knobs that a local run has no use for.
    for key in CLUSTER_ONLY_FIELDS:
        spec.pop(key, None)
    return Manifest(name=name, namespace=namespace, config=from_spec(spec), uid=uid)


CLUSTER_ONLY_FIELDS = ("suspend", "stopped", "ttlSecondsAfterFinished", "bufferStorage", "placement", "resources",
                       "image")
# A container image reference as a pod takes it: no whitespace, at most Docker's limit.
IMAGE_REFERENCE = re.compile(r"[^\s]{1,512}")
# Kubernetes quantities: a claim's size in bytes ("10Gi", "500M", "1e9"); a container's resources
# also in thousandths ("500m" of a CPU).
_QUANTITY_SUFFIXES = "[eE][0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E"
STORAGE_SIZE = re.compile(rf"[0-9]+(\.[0-9]+)?({_QUANTITY_SUFFIXES})?")
_QUANTITY = re.compile(rf"[0-9]+(\.[0-9]+)?(m|{_QUANTITY_SUFFIXES})?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class BufferStorage:
    """Each replay shard's PersistentVolumeClaim in a cluster (`spec.bufferStorage`)."""

    size: str = "1Gi"
    storage_class_name: str | None = None  # None: the cluster's default StorageClass

    @classmethod
    def from_spec(cls, value: Any) -> BufferStorage:
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ConfigError("spec.bufferStorage", f"must be a mapping, got {value!r}")
        _refuse_unknown(value, {"size", "storageClassName"}, "spec.bufferStorage")
        size = value.get("size", cls.size)
        if not isinstance(size, str) or not STORAGE_SIZE.fullmatch(size):
            raise ConfigError("spec.bufferStorage.size", f"must be a quantity of bytes such as 1Gi, got {size!r}")
        storage_class = value.get("storageClassName")
        if storage_class is not None and (not isinstance(storage_class, str)
                                          or not DNS_SUBDOMAIN.fullmatch(storage_class)):
            raise ConfigError("spec.bufferStorage.storageClassName",
                              f"must be a StorageClass name (lower-case DNS subdomain), got {storage_class!r}")
        return cls(size, storage_class)


_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
POD_ROLES = ("environment", "buffer", "learner")  # the roles an experiment's pods run


@dataclass(frozen=True)
class Placement:
    """Where an experiment's pods may run (`spec.placement`, over the chart's defaults): the pod
    fields of the same names."""

    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None
    image_pull_secrets: list[str] | None = None  # Secret names

    @classmethod
    def from_spec(cls, value: Any, path: str = "spec.placement") -> Placement:
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be a mapping, got {value!r}")
        _refuse_unknown(value, {"nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"},
                        path)
        selector = value.get("nodeSelector")
        if selector is not None and (not isinstance(selector, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in selector.items())):
            raise ConfigError(f"{path}.nodeSelector", f"must map label names to strings, got {selector!r}")
        tolerations = value.get("tolerations")
        if tolerations is not None:
            if not isinstance(tolerations, list):
                raise ConfigError(f"{path}.tolerations", f"must be a list, got {tolerations!r}")
            for i, t in enumerate(tolerations):
                if not isinstance(t, dict) or not set(t) <= _TOLERATION_KEYS:
                    raise ConfigError(f"{path}.tolerations[{i}]",
                                      f"must be a toleration ({', '.join(sorted(_TOLERATION_KEYS))}), got {t!r}")
        affinity = value.get("affinity")
        if affinity is not None and (not isinstance(affinity, dict) or not set(affinity) <= {
                "nodeAffinity", "podAffinity", "podAntiAffinity"}):
            raise ConfigError(f"{path}.affinity", "must be a pod affinity (nodeAffinity, podAffinity, podAntiAffinity)")
        priority = value.get("priorityClassName")
        if priority is not None and (not isinstance(priority, str) or not DNS_SUBDOMAIN.fullmatch(priority)):
            raise ConfigError(f"{path}.priorityClassName", f"must be a PriorityClass name, got {priority!r}")
        secrets = value.get("imagePullSecrets")
        if secrets is not None and (not isinstance(secrets, list) or not all(
                isinstance(x, str) and DNS_SUBDOMAIN.fullmatch(x) for x in secrets)):
            raise ConfigError(f"{path}.imagePullSecrets", f"must be a list of Secret names, got {secrets!r}")
        return cls(selector, tolerations, affinity, priority, secrets)

    def over(self, defaults: Placement) -> Placement:
        """These fields where set, the defaults' elsewhere."""
        return Placement(*(mine if mine is not None else theirs for mine, theirs in zip(
            dataclasses.astuple(self), dataclasses.astuple(defaults))))

    def pod_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = list(self.tolerations)
        if self.affinity:
            fields["affinity"] = dict(self.affinity)
        if self.priority_class_name:
            fields["priorityClassName"] = self.priority_class_name
        if self.image_pull_secrets:
            fields["imagePullSecrets"] = [{"name": name} for name in self.image_pull_secrets]
        return fields


def role_resources(value: Any, path: str = "spec.resources") -> dict[str, dict[str, dict[str, str]]]:
    """`spec.resources`: per pod role, container requests and limits (over the chart's)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, f"must be a mapping, got {value!r}")
    out: dict[str, dict[str, dict[str, str]]] = {}
    for role, resources in value.items():
        if role not in POD_ROLES:
            raise ConfigError(f"{path}.{role}", f"unknown role (roles: {', '.join(POD_ROLES)})")
        if not isinstance(resources, dict) or not set(resources) <= {"requests", "limits"}:
            raise ConfigError(f"{path}.{role}", "must be a mapping of requests and limits")
        out[role] = {}
        for kind, amounts in resources.items():
            if not isinstance(amounts, dict):
                raise ConfigError(f"{path}.{role}.{kind}", f"must map resources to quantities, got {amounts!r}")
            out[role][kind] = {}
            for name, amount in amounts.items():
                # YAML gives `cpu: 2` as a number; Kubernetes takes it as the quantity "2".
                text = str(amount) if isinstance(amount, (int, float)) and not isinstance(amount, bool) else amount
                if not isinstance(text, str) or not _QUANTITY.fullmatch(text):
                    raise ConfigError(f"{path}.{role}.{kind}.{name}", f"must be a quantity such as 500m or 1Gi, "
                                                                      f"got {amount!r}")
                out[role][kind][name] = text
    return out


def check_cluster_fields(spec: dict[str, Any]) -> None:
    """The spec fields only a cluster acts on (suspend, stopped, TTL, the shards' claims), checked as the CRD
    checks them."""
    for flag in ("suspend", "stopped"):
        if flag in spec and not isinstance(spec[flag], bool):
            raise ConfigError(f"spec.{flag}", f"must be true or false, got {spec[flag]!r}")
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
        raise ConfigError("spec.ttlSecondsAfterFinished", f"must be an integer >= 0, got {ttl!r}")
    image = spec.get("image")
    if image is not None and not (isinstance(image, str) and IMAGE_REFERENCE.fullmatch(image)):
        raise ConfigError("spec.image", f"must be an image reference (no spaces, at most 512 characters), got {image!r}")
    BufferStorage.from_spec(spec.get("bufferStorage"))
    Placement.from_spec(spec.get("placement"))
    role_resources(spec.get("resources"))


def load_manifest(path: str | Path) -> Manifest:
    """Reads and validates an RLExperiment YAML file."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(str(path), f"cannot read: {err.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ConfigError(str(path), f"not valid YAML: {err}") from None
    if len(docs) != 1:
        raise ConfigError(str(path), f"must hold exactly one RLExperiment, found {len(docs)} documents")
    return parse_manifest(docs[0])
