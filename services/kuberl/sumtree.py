"""A sum tree over a fixed number of leaves: set many leaves and draw many proportional samples
at once, each in O(log n) numpy operations for the whole batch (prioritized replay's index)."""

from __future__ import annotations

import numpy as np


class SumTree:
    """Leaves hold non-negative weights; `find` maps uniform draws in [0, total) to leaves with
    probability weight / total. Empty leaves weigh 0 and are never drawn."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._leaves = 1 << (size - 1).bit_length()  # a power of two: every level is full
        self._tree = np.zeros(2 * self._leaves, np.float64)  # node i's children are 2i and 2i + 1; root 1

    @property
    def total(self) -> float:
        return float(self._tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self._tree[self._leaves + np.asarray(indices)]

    def set(self, indices: np.ndarray, weights: np.ndarray) -> None:
        """Sets leaves (the last of repeated indices wins) and recomputes the sums above them."""
        indices = np.asarray(indices, np.int64)
        weights = np.asarray(weights, np.float64)
        if indices.size == 0:
            return
        if indices.min() < 0 or indices.max() >= self.size:
            raise IndexError(f"leaf indices must be in [0, {self.size})")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("weights must be finite and >= 0")
        nodes = self._leaves + indices
        self._tree[nodes] = weights
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, draws: np.ndarray) -> np.ndarray:
        """The leaf each draw in [0, total) falls in; total must be > 0."""
        mass = np.minimum(np.asarray(draws, np.float64), np.nextafter(self.total, 0.0))
        nodes = np.ones(mass.shape, np.int64)
        for _ in range(self._leaves.bit_length() - 1):  # root to leaves, every draw a level at a time
            left = self._tree[2 * nodes]
            right = mass >= left
            mass = np.where(right, mass - left, mass)
            nodes = 2 * nodes + right
        leaves = nodes - self._leaves
        # Rounding can leave a draw on an empty leaf: it goes to the nearest weighted one before it.
        empty = self._tree[nodes] <= 0
        if empty.any():
            weighted = np.flatnonzero(self._tree[self._leaves:self._leaves + self.size] > 0)
            leaves[empty] = weighted[np.maximum(np.searchsorted(weighted, leaves[empty]) - 1, 0)]
        return leaves
