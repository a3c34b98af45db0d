"""What to do with a trained agent: find its policy (a run directory, or a policy role), evaluate
it on fresh episodes, watch it play (a GIF), and export its weights for use elsewhere.

The policy is the experiment's result (the best evaluated version, as the learner chose it)
where one exists, else the newest version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from kuberl.config import Manifest, from_proto, load_manifest, names_of_experiment_id
from kuberl.envs import describe, make_rendering_env
from kuberl.learner.core import greedy_returns
from kuberl.nets import NEGATIVE_SLOPE, Params, QNetwork
from kuberl.policy.core import Evaluation, read_policy
from kuberl.rpc import stub
from kuberl.tensors import unpack_weights
from kuberl.v1 import policy_service_pb2 as policy_pb
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc

# Fresh episodes start here unless told otherwise: far from the actors' seeds (seed * 1000 +
# actor) and the learner's evaluation seeds, so the policy is scored on states it was not chosen on.
FRESH_SEED = 3_000_017
EXPORT_FORMAT = "kuberl.policy-export"
EXPORT_VERSION = 1


@dataclass(frozen=True)
class TrainedPolicy:
    manifest: Manifest
    net: QNetwork
    params: Params
    version: int
    is_result: bool  # the best evaluated version; False: the newest (nothing evaluated yet)
    evaluation: Evaluation | None

    @property
    def label(self) -> str:
        if self.is_result and self.evaluation is not None:
            e = self.evaluation
            return f"result (version {self.version}, evaluated {e.mean_return:.1f} over {e.episodes} episodes)"
        return f"newest version {self.version} (no evaluated result yet)"


def run_directory(run: str | Path, runs_root: Path = Path("kuberl-runs")) -> Path:
    """A run directory as given, or the newest run of the experiment NAME under runs_root."""
    from kuberl.local import newest_run_dir

    path = Path(run)
    if (path / "experiment.yaml").is_file():
        return path
    newest = newest_run_dir(runs_root / str(run)) if "/" not in str(run) else None
    if newest is None:
        raise FileNotFoundError(f"{run}: neither a run directory (with experiment.yaml) nor an experiment with a run "
                                f"in {runs_root}/")
    return newest


def _policy(manifest: Manifest, weights: Params, version: int, is_result: bool,
            evaluation: Evaluation | None) -> TrainedPolicy:
    shape = describe(manifest.config.env_id, manifest.config.env_kwargs)
    net = QNetwork.of(manifest.config.learner, shape.obs_size, shape.num_actions)
    net.check(weights)
    return TrainedPolicy(manifest, net, weights, version, is_result, evaluation)


def from_run(run_dir: Path) -> TrainedPolicy:
    """The policy a local run left, from its policy role's snapshot (the run need not be running)."""
    manifest = load_manifest(run_dir / "experiment.yaml")
    found = read_policy(run_dir / "policy-0", manifest.experiment_id)
    if found is None:
        raise FileNotFoundError(f"{run_dir}: no policy snapshot of {manifest.experiment_id} in policy-0/ "
                                "(did the run publish any weights?)")
    latest, result = found
    if result is not None:
        return _policy(manifest, result.weights, result.version, True, result.evaluation)
    version, weights = latest
    return _policy(manifest, weights, version, False, None)


def held_results(address: str, timeout: float = 30.0) -> list[policy_pb.HeldResult]:
    """Every result a policy role holds: of running experiments, and those kept after release."""
    return list(stub(policy_grpc.PolicyServiceStub, address).ListResults(policy_pb.ListResultsRequest(),
                                                                         timeout=timeout).results)


def resolve_experiment_id(address: str, given: str, timeout: float = 30.0) -> str:
    """The id of a result the policy role holds, from the id itself or from NAMESPACE/NAME or
    NAME (namespace default) as the user knows it: a cluster adds '#UID8', which a deleted
    experiment's user no longer sees. Of several (a name re-created), the live one, else the one
    released last."""
    held = held_results(address, timeout)
    if any(r.experiment_id == given for r in held):
        return given
    scoped = given if "/" in given else f"default/{given}"
    matches = [r for r in held if r.experiment_id == scoped or r.experiment_id.startswith(f"{scoped}#")]
    if not matches:
        raise FileNotFoundError(f"{address}: the policy role holds no result of {given} (kuberl results lists "
                                "what it holds)")
    return max(matches, key=lambda r: (r.released_at_seconds == 0, r.released_at_seconds)).experiment_id


def from_policy_role(address: str, manifest: Manifest | None, experiment_id: str | None = None,
                     timeout: float = 30.0) -> TrainedPolicy:
    """The experiment's policy fetched from a policy role (a cluster's, or a standing system's),
    its result also after the experiment was deleted. Without a manifest, the config is the one
    kept with the result, and `experiment_id` may be a name resolve_experiment_id knows."""
    api = stub(policy_grpc.PolicyServiceStub, address)
    if manifest is None:
        if not experiment_id:
            raise ValueError("an experiment id or a manifest is needed")
        experiment_id = resolve_experiment_id(address, experiment_id, timeout)
    experiment_id = experiment_id or manifest.experiment_id
    try:
        reply = api.GetPolicy(policy_pb.GetPolicyRequest(experiment_id=experiment_id, result=True,
                                                         include_released=True), timeout=timeout)
        if manifest is None:
            if not reply.HasField("config"):
                raise FileNotFoundError(f"{address}: the result of {experiment_id} was kept without its config; "
                                        "give the experiment's manifest")
            namespace, name = names_of_experiment_id(experiment_id)
            manifest = Manifest(name, namespace, from_proto(reply.config))
        e = reply.evaluation
        return _policy(manifest, unpack_weights(reply.weights), reply.weights.version, True,
                       Evaluation(e.mean_return, e.episodes, e.env_steps))
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.NOT_FOUND or manifest is None:
            raise
    reply = api.GetPolicy(policy_pb.GetPolicyRequest(experiment_id=experiment_id, newer_than_version=-1),
                          timeout=timeout)
    if not reply.updated:
        raise FileNotFoundError(f"{address}: the policy role holds no weights of {experiment_id}")
    return _policy(manifest, unpack_weights(reply.weights), reply.weights.version, False, None)


def _acting_params(policy: TrainedPolicy) -> Params:
    """The weights in float64 for evaluate and play: in float32 a row's Q-values move by ~1e-3
    with the batch it is computed in (BLAS blocks differently), which flips near-tied actions,
    so `play --seed S` would not replay the episode `evaluate` scored on seed S."""
    return [p.astype(np.float64) for p in policy.params]


def fresh_returns(policy: TrainedPolicy, episodes: int, seed: int = FRESH_SEED) -> np.ndarray:
    """Returns of `episodes` greedy episodes on seeds seed, seed + 1, ..."""
    cfg = policy.manifest.config
    return greedy_returns(policy.net, _acting_params(policy), cfg.env_id, episodes, cfg.environment.max_episode_steps,
                          seed, cfg.env_kwargs)


def play(policy: TrainedPolicy, out: Path, episodes: int = 3, seed: int = FRESH_SEED, max_fps: int = 25
         ) -> list[float]:
    """Renders greedy episodes (seeds seed, seed + 1, ...) one after the other into a GIF at
    `out`; returns each episode's return. Frames beyond max_fps of the env's own rate are dropped."""
    from PIL import Image

    cfg = policy.manifest.config
    env = make_rendering_env(cfg.env_id, cfg.environment.max_episode_steps, cfg.env_kwargs)
    env_fps = int(env.metadata.get("render_fps") or max_fps)
    every = max(1, round(env_fps / max_fps))
    params = _acting_params(policy)
    frames: list[Image.Image] = []
    returns = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            # A median cut costs ~30 ms a frame; mapping onto the episode's first frame's palette
            # costs ~2 ms. A colour that first shows later (a flame, a particle) takes the nearest one.
            first = Image.fromarray(env.render()).convert("P", palette=Image.Palette.ADAPTIVE)
            frames.append(first)
            total, step, done = 0.0, 0, False
            while not done:
                action = int(policy.net.greedy_actions(params, np.asarray(obs, np.float32)[None])[0])
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                step += 1
                done = terminated or truncated
                if done or step % every == 0:
                    frames.append(Image.fromarray(env.render()).quantize(palette=first, dither=Image.Dither.NONE))
            returns.append(total)
    finally:
        env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=round(1000 * every / env_fps), loop=0)
    return returns


def export_metadata(policy: TrainedPolicy) -> dict:
    """What an export says about its weights: the environment, the network's shape and
    activation, which version they are and how it was evaluated."""
    cfg = policy.manifest.config
    e = policy.evaluation
    return {
        "format": EXPORT_FORMAT, "format_version": EXPORT_VERSION,
        "experiment": policy.manifest.name, "env_id": cfg.env_id, "env_kwargs": dict(cfg.env_kwargs or {}),
        "obs_size": policy.net.obs_size, "num_actions": policy.net.num_actions,
        "hidden_sizes": list(policy.net.hidden_sizes), "dueling": policy.net.dueling,
        "activation": "leaky_relu", "negative_slope": NEGATIVE_SLOPE,
        "policy_version": policy.version, "is_result": policy.is_result,
        "evaluation": None if e is None else {"mean_return": e.mean_return, "episodes": e.episodes,
                                              "env_steps": e.env_steps},
    }


def export(policy: TrainedPolicy, out: Path) -> Path:
    """Writes the weights as an .npz any numpy can read without pickle: w0, w1, ... (each layer's
    weight matrix, then its bias) and `metadata`, a JSON string saying how to use them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # a file object: np.savez would append .npz to another suffix
        np.savez(f, metadata=np.array(json.dumps(export_metadata(policy))),
                 **{f"w{i}": w for i, w in enumerate(policy.params)})
    return out


ONNX_OPSET = 17  # ReduceMean still takes its axes as an attribute; every current runtime runs it


def export_onnx(policy: TrainedPolicy, out: Path) -> Path:
    """Writes the network as an ONNX model: input `obs` [batch, obs_size] float32, outputs
    `q_values` [batch, num_actions] and `action` [batch] int64 (the greedy one); the .npz's
    metadata JSON is its `kuberl` metadata property. Needs the `onnx` extra."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    params = [np.asarray(w, np.float32) for w in policy.params]
    layers = len(params) // 2
    weights = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(params)]
    nodes, h = [], "obs"
    for layer in range(layers):
        z = f"layer{layer}"
        nodes.append(helper.make_node("Gemm", [h, f"w{2 * layer}", f"w{2 * layer + 1}"], [z]))
        if layer < layers - 1:
            h = f"hidden{layer}"
            nodes.append(helper.make_node("LeakyRelu", [z], [h], alpha=NEGATIVE_SLOPE))
    if policy.net.dueling:  # the net's head: Q = V + A - mean(A), V the first output
        weights += [numpy_helper.from_array(np.array(values, np.int64), name) for name, values in
                    (("zero", [0]), ("one", [1]), ("end", [np.iinfo(np.int64).max]))]
        nodes += [helper.make_node("Slice", [z, "zero", "one", "one"], ["value"]),
                  helper.make_node("Slice", [z, "one", "end", "one"], ["advantages"]),
                  helper.make_node("ReduceMean", ["advantages"], ["mean_advantage"], axes=[1], keepdims=1),
                  helper.make_node("Sub", ["advantages", "mean_advantage"], ["centered"]),
                  helper.make_node("Add", ["value", "centered"], ["q_values"])]
    else:
        nodes.append(helper.make_node("Identity", [z], ["q_values"]))
    nodes.append(helper.make_node("ArgMax", ["q_values"], ["action"], axis=1, keepdims=0))
    graph = helper.make_graph(
        nodes, f"kuberl-{policy.manifest.name}",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", policy.net.obs_size])],
        [helper.make_tensor_value_info("q_values", TensorProto.FLOAT, ["batch", policy.net.num_actions]),
         helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"])], weights)
    model = helper.make_model(graph, producer_name="kuberl", opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    helper.set_model_props(model, {"kuberl": json.dumps(export_metadata(policy))})
    onnx.checker.check_model(model, full_check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out
