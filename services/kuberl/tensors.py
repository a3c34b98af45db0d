"""numpy arrays <-> protobuf Tensors and TransitionBatches, validated on the way in.

Everything crossing the wire is checked here once (dtype, shape against byte length, equal
row counts, finite values), so that servers can turn a ValueError into INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from kuberl.v1 import common_pb2

_TO_PROTO = {
    np.dtype(np.float32): common_pb2.DTYPE_FLOAT32,
    np.dtype(np.float64): common_pb2.DTYPE_FLOAT64,
    np.dtype(np.int64): common_pb2.DTYPE_INT64,
    np.dtype(np.int32): common_pb2.DTYPE_INT32,
    np.dtype(np.bool_): common_pb2.DTYPE_BOOL,
    np.dtype(np.uint8): common_pb2.DTYPE_UINT8,
}
_FROM_PROTO = {code: dtype.newbyteorder("<") for dtype, code in _TO_PROTO.items()}


def pack(array: np.ndarray) -> common_pb2.Tensor:
    array = np.asarray(array)
    code = _TO_PROTO.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"unsupported dtype {array.dtype}")
    data = np.ascontiguousarray(array, dtype=_FROM_PROTO[code]).tobytes()
    return common_pb2.Tensor(dtype=code, shape=array.shape, data=data)


def unpack(tensor: common_pb2.Tensor, name: str = "tensor") -> np.ndarray:
    """The array a Tensor carries; ValueError naming `name` when it is malformed."""
    dtype = _FROM_PROTO.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"{name}: unknown dtype {tensor.dtype}")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"{name}: negative dimension in shape {shape}")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a huge shape cannot wrap around
    if expected != len(tensor.data):
        raise ValueError(f"{name}: shape {shape} of {dtype.name} needs {expected} bytes, got {len(tensor.data)}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def unpack_vector(tensor: common_pb2.Tensor, name: str, dtype: type[np.generic]) -> np.ndarray:
    """A one-dimensional array of exactly `dtype`; ValueError naming `name` otherwise."""
    array = unpack(tensor, name)
    if array.dtype != dtype or array.ndim != 1:
        raise ValueError(f"{name}: must be a one-dimensional {np.dtype(dtype).name} tensor, "
                         f"got {array.dtype.name} of shape {array.shape}")
    return array


class Transitions(NamedTuple):
    """A batch of transitions as arrays with one leading row dimension.

    A row may span several env steps (n-step returns): `rewards` is then the discounted sum of
    their rewards, `next_obs` the observation `steps` env steps later, and the learner
    bootstraps with gamma ** steps."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    steps: np.ndarray  # uint8, >= 1

    @property
    def rows(self) -> int:
        # Not __len__: a NamedTuple's own machinery (_replace, _make) relies on len() being the field count.
        return int(self.rewards.shape[0])

    @staticmethod
    def concatenate(parts: list[Transitions], axis: int = 0) -> Transitions:
        return Transitions(*(np.concatenate(cols, axis=axis) for cols in zip(*parts)))


_COLUMNS = Transitions._fields
MAX_STEPS_PER_ROW = 255  # uint8


def one_step_rows(rows: int) -> np.ndarray:
    """The `steps` column of rows that each span one env step."""
    return np.ones(rows, dtype=np.uint8)


def pack_transitions(batch: Transitions) -> common_pb2.TransitionBatch:
    return common_pb2.TransitionBatch(**{name: pack(getattr(batch, name)) for name in _COLUMNS})


def unpack_transitions(msg: common_pb2.TransitionBatch) -> Transitions:
    """Arrays of a TransitionBatch; ValueError naming the column that is malformed."""
    arrays = {}
    for name in _COLUMNS:
        if name == "steps" and not msg.HasField(name):
            continue  # a client that knows nothing of n-step rows: one step each
        if not msg.HasField(name):
            raise ValueError(f"batch.{name}: missing")
        arrays[name] = unpack(getattr(msg, name), f"batch.{name}")
    rows = arrays["rewards"].shape[:1]
    if arrays["rewards"].ndim != 1:
        raise ValueError(f"batch.rewards: must be one-dimensional, got shape {arrays['rewards'].shape}")
    arrays.setdefault("steps", one_step_rows(rows[0]))
    for name, array in arrays.items():
        if array.ndim == 0 or array.shape[:1] != rows:
            raise ValueError(f"batch.{name}: {array.shape[0] if array.ndim else 0} rows, rewards has {rows[0]}")
    if arrays["obs"].shape != arrays["next_obs"].shape:
        raise ValueError(f"batch.next_obs: shape {arrays['next_obs'].shape} differs from obs {arrays['obs'].shape}")
    for name in ("actions", "terminated", "truncated", "steps"):
        if arrays[name].ndim != 1:
            raise ValueError(f"batch.{name}: must be one-dimensional, got shape {arrays[name].shape}")
    if arrays["actions"].dtype.kind not in "iu":
        raise ValueError(f"batch.actions: must be integers, got {arrays['actions'].dtype}")
    for name in ("terminated", "truncated"):
        if arrays[name].dtype != np.bool_:
            raise ValueError(f"batch.{name}: must be bool, got {arrays[name].dtype}")
    if arrays["steps"].dtype != np.uint8:
        raise ValueError(f"batch.steps: must be uint8, got {arrays['steps'].dtype}")
    if arrays["steps"].size and arrays["steps"].min() < 1:
        raise ValueError("batch.steps: every row spans at least one env step")
    for name in ("obs", "rewards", "next_obs"):
        if arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
            raise ValueError(f"batch.{name}: holds NaN or infinite values")
    return Transitions(**arrays)


def pack_weights(arrays: list[np.ndarray], version: int) -> common_pb2.PolicyWeights:
    return common_pb2.PolicyWeights(version=version, tensors=[pack(a) for a in arrays])


def unpack_weights(msg: common_pb2.PolicyWeights) -> list[np.ndarray]:
    arrays = [unpack(t, f"weights.tensors[{i}]") for i, t in enumerate(msg.tensors)]
    for i, array in enumerate(arrays):
        if array.dtype.kind != "f" or not np.isfinite(array).all():
            raise ValueError(f"weights.tensors[{i}]: must be finite floats")
    return arrays
