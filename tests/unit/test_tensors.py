import numpy as np
import pytest

from kuberl.tensors import (Transitions, pack, pack_transitions, pack_weights, unpack, unpack_transitions,
                            unpack_weights)
from kuberl.v1 import common_pb2


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    np.array([-(2**62), 0, 2**62 + 5], dtype=np.int64),
    np.array([[True, False], [False, True]]),
    np.arange(256, dtype=np.uint8).reshape(16, 4, 4),
    np.array([1.5, -2.25], dtype=np.float64),
    np.array([-7, 9], dtype=np.int32),
    np.zeros((0, 4), dtype=np.float32),
    np.zeros((0,), dtype=np.int64),
    np.zeros((0,), dtype=bool),
    np.zeros((0, 2, 3), dtype=np.uint8),
    np.float32(3.5),  # 0-d
], ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_pack_unpack_round_trip(array):
    msg = common_pb2.Tensor.FromString(pack(array).SerializeToString())
    out = unpack(msg)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_pack_handles_non_contiguous_and_big_endian():
    base = np.arange(20, dtype=np.float32).reshape(4, 5)
    np.testing.assert_array_equal(unpack(pack(base[:, ::2])), base[:, ::2])
    big = np.arange(5, dtype=">i8")
    out = unpack(pack(big))
    np.testing.assert_array_equal(out, big)
    assert out.dtype == np.dtype("<i8")


def test_pack_refuses_unsupported_dtype():
    with pytest.raises(ValueError, match="unsupported dtype"):
        pack(np.zeros(3, dtype=np.complex64))


def test_unpack_refuses_byte_length_mismatch():
    msg = pack(np.zeros((3, 4), dtype=np.float32))
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match=r"^obs: shape \(3, 4\) of float32 needs 48 bytes, got 47"):
        unpack(msg, "obs")
    msg = pack(np.zeros(2, dtype=np.int64))
    msg.shape[:] = [3]
    with pytest.raises(ValueError, match="needs 24 bytes, got 16"):
        unpack(msg)


def test_unpack_refuses_unknown_dtype():
    msg = pack(np.zeros(2, dtype=np.float32))
    msg.dtype = common_pb2.DTYPE_UNSPECIFIED
    with pytest.raises(ValueError, match="^x: unknown dtype 0"):
        unpack(msg, "x")
    msg.dtype = 99
    with pytest.raises(ValueError, match="unknown dtype 99"):
        unpack(msg, "x")


def test_unpack_refuses_negative_shape():
    msg = common_pb2.Tensor(dtype=common_pb2.DTYPE_FLOAT32, shape=[-1, -4], data=b"\0" * 16)
    with pytest.raises(ValueError, match="negative dimension"):
        unpack(msg)


def batch(n=5, obs_size=4, seed=0):
    rng = np.random.default_rng(seed)
    return Transitions(obs=rng.normal(size=(n, obs_size)).astype(np.float32),
                       actions=rng.integers(0, 2, n).astype(np.int64),
                       rewards=rng.normal(size=n).astype(np.float32),
                       next_obs=rng.normal(size=(n, obs_size)).astype(np.float32),
                       terminated=rng.random(n) < 0.3, truncated=rng.random(n) < 0.3,
                       steps=rng.integers(1, 4, n).astype(np.uint8))


@pytest.mark.parametrize("n", [0, 1, 6])
def test_transitions_round_trip(n):
    b = batch(n)
    msg = common_pb2.TransitionBatch.FromString(pack_transitions(b).SerializeToString())
    out = unpack_transitions(msg)
    assert out.rows == n
    assert len(out) == len(Transitions._fields)  # still a NamedTuple of its columns
    for name, a, o in zip(Transitions._fields, b, out):
        assert o.dtype == a.dtype, name
        np.testing.assert_array_equal(o, a, err_msg=name)


def with_column(name, array):
    msg = pack_transitions(batch())
    getattr(msg, name).CopyFrom(pack(array))
    return msg


@pytest.mark.parametrize("name", [f for f in Transitions._fields if f != "steps"])
def test_missing_column_is_refused(name):
    msg = pack_transitions(batch())
    msg.ClearField(name)
    with pytest.raises(ValueError, match=rf"^batch\.{name}: missing"):
        unpack_transitions(msg)


def test_rows_without_steps_span_one_env_step_each():
    msg = pack_transitions(batch())
    msg.ClearField("steps")
    out = unpack_transitions(msg)
    assert out.steps.dtype == np.uint8 and (out.steps == 1).all() and out.steps.shape == (out.rows,)


@pytest.mark.parametrize("array, match", [(np.zeros(5, np.uint8), "at least one env step"),
                                          (np.ones(5, np.int64), "must be uint8"),
                                          (np.ones((5, 1), np.uint8), "one-dimensional"),
                                          (np.ones(4, np.uint8), "rows")])
def test_bad_steps_are_refused(array, match):
    with pytest.raises(ValueError, match=rf"batch\.steps: .*{match}"):
        unpack_transitions(with_column("steps", array))


@pytest.mark.parametrize("name, array", [
    ("obs", np.zeros((4, 4), np.float32)),
    ("actions", np.zeros(6, np.int64)),
    ("terminated", np.zeros(4, bool)),
    ("truncated", np.zeros(0, bool)),
])
def test_row_count_mismatch_is_refused(name, array):
    msg = with_column(name, array)
    with pytest.raises(ValueError, match=r"batch\.(obs|next_obs|actions|terminated|truncated): .*rows"):
        unpack_transitions(msg)


@pytest.mark.parametrize("name, value", [("rewards", np.nan), ("rewards", np.inf), ("rewards", -np.inf),
                                         ("obs", np.nan), ("next_obs", np.inf)])
def test_non_finite_values_are_refused(name, value):
    array = getattr(batch(), name).copy()
    array.flat[3] = value
    with pytest.raises(ValueError, match=rf"batch\.{name}: holds NaN or infinite"):
        unpack_transitions(with_column(name, array))


def test_obs_next_obs_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"batch\.next_obs: shape \(5, 3\) differs from obs \(5, 4\)"):
        unpack_transitions(with_column("next_obs", np.zeros((5, 3), np.float32)))


def test_float_actions_are_refused():
    with pytest.raises(ValueError, match=r"batch\.actions: must be integers"):
        unpack_transitions(with_column("actions", np.zeros(5, np.float32)))


def test_two_dimensional_actions_are_refused():
    with pytest.raises(ValueError, match=r"batch\.actions: must be one-dimensional"):
        unpack_transitions(with_column("actions", np.zeros((5, 1), np.int64)))


def test_two_dimensional_rewards_are_refused():
    with pytest.raises(ValueError, match=r"batch\.rewards: must be one-dimensional"):
        unpack_transitions(with_column("rewards", np.zeros((5, 1), np.float32)))


@pytest.mark.parametrize("name", ["terminated", "truncated"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32])
def test_non_bool_flags_are_refused(name, dtype):
    with pytest.raises(ValueError, match=rf"batch\.{name}: must be bool"):
        unpack_transitions(with_column(name, np.zeros(5, dtype)))


def test_int32_actions_are_accepted():
    out = unpack_transitions(with_column("actions", np.array([0, 1, 1, 0, 1], np.int32)))
    np.testing.assert_array_equal(out.actions, [0, 1, 1, 0, 1])


def test_transitions_concatenate():
    a, b = batch(2, seed=1), batch(3, seed=2)
    c = Transitions.concatenate([a, b])
    assert c.rows == 5
    np.testing.assert_array_equal(c.obs, np.concatenate([a.obs, b.obs]))
    np.testing.assert_array_equal(c.terminated, np.concatenate([a.terminated, b.terminated]))


def test_namedtuple_machinery_still_works():
    b = batch(3)
    again = Transitions._make(list(b))
    assert again.rows == 3
    assert b._replace(rewards=np.zeros(3, np.float32)).rows == 3


def test_weights_round_trip():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.0], np.float32)]
    msg = common_pb2.PolicyWeights.FromString(pack_weights(arrays, version=17).SerializeToString())
    assert msg.version == 17
    out = unpack_weights(msg)
    assert len(out) == 2
    for a, o in zip(arrays, out):
        np.testing.assert_array_equal(o, a)


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan], np.float32), np.array([np.inf], np.float32),
                                 np.array([1, 2], np.int64)])
def test_unpack_weights_refuses_non_finite_or_non_float(bad):
    msg = pack_weights([np.zeros(2, np.float32), bad], version=1)
    with pytest.raises(ValueError, match=r"weights\.tensors\[1\]: must be finite floats"):
        unpack_weights(msg)
