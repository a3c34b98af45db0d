"""What the export tests ask of an exported policy."""

from __future__ import annotations

import numpy as np


def assert_acts_alike(q_values: np.ndarray, actions: np.ndarray, want_q: np.ndarray) -> None:
    """The same Q-values up to float32 rounding (another order of summation: errors scale with the
    layers' magnitudes, seen 4e-5 where |Q| reaches 1 500), and the same greedy action wherever
    the two best actions are not within that rounding of each other."""
    scale = float(np.abs(want_q).max())
    np.testing.assert_allclose(q_values, want_q, rtol=1e-5, atol=1e-5 * scale)
    top_two = np.sort(want_q, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 1e-4 * scale
    assert clear.mean() > 0.9, "most observations have a clear greedy action"
    np.testing.assert_array_equal(actions[clear], want_q.argmax(axis=1)[clear])
