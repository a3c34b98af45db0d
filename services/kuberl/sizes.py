"""Sizes that follow from a config, checked where they are known, each problem naming its fields.

`static_problems` needs only the config (the CLI, the CRD's CEL rules, the experiment API);
`environment_problems` needs the environment's observation width and action count, so the
learner checks it when a run starts and ends it with the verdict INVALID_SPEC (the operator
stays free of gymnasium)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kuberl.nets import QNetwork

if TYPE_CHECKING:  # config checks its own sizes with these functions
    from kuberl.config import ExperimentConfig

# Every gRPC message (kuberl.rpc.CHANNEL_OPTIONS) and a shard's answer to one SampleBatch.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_SAMPLE_ROWS = 1 << 20
WEIGHT_BYTES = 4  # float32


def row_bytes(obs_size: int) -> int:
    """One transition on the wire: obs and next_obs as float32, an int64 action, a float32
    reward, two flags and its step count."""
    return 2 * 4 * obs_size + 8 + 4 + 2 + 1


# Prioritized replay keeps per row a key and a sum tree's share (a leaf and an inner node,
# over a power of two of leaves: at most 4 float64).
PRIORITY_ROW_BYTES = 8 + 4 * 8


def stored_row_bytes(obs_size: int, prioritized: bool) -> int:
    """What a shard holds per row of its ring."""
    return row_bytes(obs_size) + (PRIORITY_ROW_BYTES if prioritized else 0)


def weight_count(net: QNetwork) -> int:
    sizes = net.layer_sizes
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))


def static_problems(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """(field path under spec, message) for sizes too big whatever the environment."""
    lc = cfg.learner
    problems = []
    if lc.batch_size * lc.batches_per_sample > MAX_SAMPLE_ROWS:
        problems.append(("learner.batchesPerSample",
                         f"learner.batchSize x learner.batchesPerSample = {lc.batch_size * lc.batches_per_sample} "
                         f"rows per SampleBatch; a shard answers at most {MAX_SAMPLE_ROWS}"))
    hidden = weight_count(QNetwork.of(lc, 0, 0)) * WEIGHT_BYTES
    if hidden > MAX_MESSAGE_BYTES:
        problems.append(("learner.hiddenSizes", f"{lc.hidden_sizes}: the hidden layers' weights alone are {hidden} "
                                                f"bytes; a weights message holds at most {MAX_MESSAGE_BYTES}"))
    return problems


def environment_problems(cfg: ExperimentConfig, obs_size: int, num_actions: int) -> list[tuple[str, str]]:
    """(field path under spec, message) for sizes this environment makes too big."""
    row = row_bytes(obs_size)
    lc = cfg.learner
    problems = static_problems(cfg)
    sample = row * lc.batch_size * lc.batches_per_sample
    if sample > MAX_MESSAGE_BYTES:
        problems.append(("learner.batchesPerSample",
                         f"learner.batchSize x learner.batchesPerSample rows of {row} bytes ({cfg.env_id}'s "
                         f"{obs_size} observation values) are {sample} bytes per SampleBatch answer; at most "
                         f"{MAX_MESSAGE_BYTES}"))
    push = row * cfg.environment.push_batch_size
    if push > MAX_MESSAGE_BYTES:
        problems.append(("environment.pushBatchSize",
                         f"{cfg.environment.push_batch_size} rows of {row} bytes are {push} bytes per push; at most "
                         f"{MAX_MESSAGE_BYTES}"))
    weights = weight_count(QNetwork.of(lc, obs_size, num_actions)) * WEIGHT_BYTES
    if weights > MAX_MESSAGE_BYTES:
        problems.append(("learner.hiddenSizes",
                         f"{lc.hidden_sizes} with {obs_size} inputs and {num_actions} actions: {weights} bytes of "
                         f"weights; a weights message holds at most {MAX_MESSAGE_BYTES}"))
    return problems


def describe_problems(problems: list[tuple[str, str]]) -> str:
    return "; ".join(f"spec.{path}: {message}" for path, message in problems)
