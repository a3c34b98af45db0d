"""Q-networks and Double DQN in numpy: a 2-hidden-layer leaky-ReLU MLP, Huber loss, Adam, clipping.

float32 throughout and hand-written backprop: at CartPole sizes the cost is Python call
overhead, not FLOPs, so the update keeps the number of numpy calls small (one forward over
obs and next_obs stacked together, in-place Adam).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kuberl.tensors import Transitions

Params = list[np.ndarray]  # [W1, b1, W2, b2, W3, b3]


def init_params(sizes: list[int], rng: np.random.Generator) -> Params:
    """Uniform(+-1/sqrt(fan_in)) weights and biases, as PyTorch's nn.Linear does."""
    params: Params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
    return params


# Leaky ReLU: with plain ReLU a unit whose input turns negative everywhere stops learning for
# good, and once a whole layer has died Q no longer depends on the state (a greedy policy that
# always pushes one way, from which training never recovers). A small slope keeps every unit alive.
NEGATIVE_SLOPE = 0.01


def _leaky_relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, NEGATIVE_SLOPE * z)


def q_values(params: Params, obs: np.ndarray) -> np.ndarray:
    """Q(s, .) for a batch of observations."""
    w1, b1, w2, b2, w3, b3 = params
    h = _leaky_relu(obs @ w1 + b1)
    h = _leaky_relu(h @ w2 + b2)
    return h @ w3 + b3


def greedy_actions(params: Params, obs: np.ndarray) -> np.ndarray:
    return np.argmax(q_values(params, np.asarray(obs, dtype=np.float32)), axis=1)


def check_params(params: Params, obs_size: int, num_actions: int) -> None:
    """Raises ValueError unless params form an obs_size -> h1 -> h2 -> num_actions MLP."""
    if len(params) != 6:
        raise ValueError(f"a Q-network has 6 tensors (3 weights, 3 biases), got {len(params)}")
    w1, b1, w2, b2, w3, b3 = params
    shapes_ok = (w1.ndim == w2.ndim == w3.ndim == 2 and b1.shape == (w1.shape[1],) and w2.shape[0] == w1.shape[1]
                 and b2.shape == (w2.shape[1],) and w3.shape[0] == w2.shape[1] and b3.shape == (w3.shape[1],))
    if not shapes_ok or w1.shape[0] != obs_size or w3.shape[1] != num_actions:
        raise ValueError(f"weight shapes {[p.shape for p in params]} do not form a {obs_size}-input, "
                         f"{num_actions}-action MLP")


def huber_loss_and_grads(params: Params, target_params: Params, batch: Transitions, gamma: float
                         ) -> tuple[float, Params, float]:
    """Double DQN: mean Huber(Q(s,a) - y), y = r + gamma * (1 - terminated) * Q_target(s', argmax Q(s', .)).

    Returns the loss, its gradient with respect to `params`, and the mean Q(s, a).
    """
    w1, b1, w2, b2, w3, b3 = params
    n = batch.rows
    x = np.concatenate([batch.obs, batch.next_obs]).astype(np.float32, copy=False)
    z1 = x @ w1 + b1
    h1 = _leaky_relu(z1)
    z2 = h1 @ w2 + b2
    h2 = _leaky_relu(z2)
    q_all = h2 @ w3 + b3
    q, q_next_online = q_all[:n], q_all[n:]

    rows = np.arange(n)
    best_next = np.argmax(q_next_online, axis=1)
    q_next_target = q_values(target_params, batch.next_obs.astype(np.float32, copy=False))[rows, best_next]
    not_done = 1.0 - batch.terminated.astype(np.float32)
    y = batch.rewards.astype(np.float32) + gamma * not_done * q_next_target

    q_taken = q[rows, batch.actions]
    td = q_taken - y
    abs_td = np.abs(td)
    loss = float(np.mean(np.where(abs_td <= 1.0, 0.5 * td * td, abs_td - 0.5)))

    dq = np.zeros_like(q)
    dq[rows, batch.actions] = np.clip(td, -1.0, 1.0) / n
    h1, h2, z1, z2 = h1[:n], h2[:n], z1[:n], z2[:n]
    grads_w3 = h2.T @ dq
    grads_b3 = dq.sum(axis=0)
    dh2 = (dq @ w3.T) * np.where(z2 > 0, 1.0, NEGATIVE_SLOPE).astype(z2.dtype)
    grads_w2 = h1.T @ dh2
    grads_b2 = dh2.sum(axis=0)
    dh1 = (dh2 @ w2.T) * np.where(z1 > 0, 1.0, NEGATIVE_SLOPE).astype(z1.dtype)
    grads_w1 = x[:n].T @ dh1
    grads_b1 = dh1.sum(axis=0)
    return loss, [grads_w1, grads_b1, grads_w2, grads_b2, grads_w3, grads_b3], float(q_taken.mean())


@dataclass
class UpdateResult:
    loss: float
    mean_q: float
    grad_norm: float


class DoubleDQN:
    """Online and target Q-networks with an Adam optimiser."""

    def __init__(self, obs_size: int, num_actions: int, hidden_sizes: list[int], *, learning_rate: float,
                 gamma: float, max_grad_norm: float, target_update_interval: int, seed: int):
        rng = np.random.default_rng(seed)
        self.params = init_params([obs_size, *hidden_sizes, num_actions], rng)
        self.target_params = [p.copy() for p in self.params]
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.max_grad_norm = max_grad_norm
        self.target_update_interval = target_update_interval
        self.updates = 0
        self._m = [np.zeros_like(p) for p in self.params]
        self._v = [np.zeros_like(p) for p in self.params]

    def update(self, batch: Transitions) -> UpdateResult:
        loss, grads, mean_q = huber_loss_and_grads(self.params, self.target_params, batch, self.gamma)
        grad_norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
        scale = min(1.0, self.max_grad_norm / (grad_norm + 1e-6))
        self._adam_step(grads, scale)
        self.updates += 1
        if self.updates % self.target_update_interval == 0:
            self.sync_target()
        return UpdateResult(loss, mean_q, grad_norm)

    def _adam_step(self, grads: Params, grad_scale: float, beta1: float = 0.9, beta2: float = 0.999,
                   eps: float = 1e-8) -> None:
        t = self.updates + 1
        step = self.learning_rate * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        for p, g, m, v in zip(self.params, grads, self._m, self._v):
            if grad_scale != 1.0:
                g *= grad_scale
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * g * g
            p -= step * m / (np.sqrt(v) + eps)

    def sync_target(self) -> None:
        for target, online in zip(self.target_params, self.params):
            np.copyto(target, online)

    def load(self, params: Params) -> None:
        """Restarts from given weights (online and target), e.g. the policy role's latest version."""
        for dst, src in zip(self.params, params):
            np.copyto(dst, src)
        self.sync_target()
