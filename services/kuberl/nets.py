"""Q-networks and Double DQN in numpy: a leaky-ReLU MLP of any depth, an optional dueling head,
Huber loss, Adam, clipping.

float32 throughout and hand-written backprop: at CartPole sizes the cost is Python call
overhead, not FLOPs, so the update keeps the number of numpy calls small (one forward over
obs and next_obs stacked together; the weights, gradients and Adam moments each one flat
buffer that the per-layer tensors are views of, so the optimiser is a dozen calls whatever
the depth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kuberl.config import LearnerSpec
from kuberl.tensors import Transitions

Params = list[np.ndarray]  # [W1, b1, W2, b2, ..., WL, bL]


def flat_views(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> Params:
    """Tensors of the given shapes laid end to end in `flat` (views: writing one writes flat)."""
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[start:start + size].reshape(shape))
        start += size
    return views


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


def _row_means(x: np.ndarray) -> np.ndarray:
    # ndarray.mean goes through a Python wrapper that costs more than the sum at these sizes.
    return np.add.reduce(x, axis=1, keepdims=True) * (1.0 / x.shape[1])


@dataclass(frozen=True)
class QNetwork:
    """The layout of a Q-network: obs_size -> hidden_sizes... -> the head.

    The plain head has one output per action. The dueling head (Wang et al., 2016) has a state
    value and one advantage per action, Q = V + A - mean(A): the value is learned from every
    row, whichever action it took. The weights are the same list of tensors either way, so a
    weights message needs no other description than this layout, which the config gives.
    """

    obs_size: int
    num_actions: int
    hidden_sizes: tuple[int, ...]
    dueling: bool = False

    @classmethod
    def of(cls, learner: LearnerSpec, obs_size: int, num_actions: int) -> QNetwork:
        """The network an experiment's config asks for, on its environment."""
        return cls(obs_size, num_actions, tuple(learner.hidden_sizes), learner.dueling)

    @property
    def layer_sizes(self) -> list[int]:
        return [self.obs_size, *self.hidden_sizes, self.num_actions + int(self.dueling)]

    def init(self, rng: np.random.Generator) -> Params:
        return init_params(self.layer_sizes, rng)

    def check(self, params: Params) -> None:
        """Raises ValueError unless params have exactly this layout's shapes."""
        sizes = self.layer_sizes
        want = [shape for fan_in, fan_out in zip(sizes, sizes[1:]) for shape in ((fan_in, fan_out), (fan_out,))]
        got = [p.shape for p in params]
        if got != want:
            head = "dueling " if self.dueling else ""
            raise ValueError(f"weight shapes {got} do not form the {self.obs_size}-input, {self.num_actions}-action "
                             f"{head}MLP with hidden layers {list(self.hidden_sizes)} (shapes {want})")

    def _head(self, out: np.ndarray) -> np.ndarray:
        if not self.dueling:
            return out
        advantages = out[:, 1:]
        return out[:, :1] + advantages - _row_means(advantages)

    def _head_grad(self, dq: np.ndarray) -> np.ndarray:
        if not self.dueling:
            return dq
        return np.concatenate([np.add.reduce(dq, axis=1, keepdims=True), dq - _row_means(dq)], axis=1)

    def q_values(self, params: Params, obs: np.ndarray) -> np.ndarray:
        """Q(s, .) for a batch of observations."""
        h = obs
        for i in range(0, len(params) - 2, 2):
            h = _leaky_relu(h @ params[i] + params[i + 1])
        return self._head(h @ params[-2] + params[-1])

    def greedy_actions(self, params: Params, obs: np.ndarray) -> np.ndarray:
        return np.argmax(self.q_values(params, np.asarray(obs, dtype=np.float32)), axis=1)

    def huber_loss_and_grads(self, params: Params, target_params: Params, batch: Transitions, gamma: float,
                             weights: np.ndarray | None = None,
                             out: Params | None = None) -> tuple[float, Params, float, np.ndarray]:
        """Double DQN: mean w * Huber(Q(s,a) - y), y = r + gamma**steps * (1 - terminated) * Q_target(s', argmax Q(s', .)),
        with importance weights w (prioritized replay; 1 without).

        Returns the loss, its gradient with respect to `params` (written into `out` when given,
        tensors of params' shapes), the mean Q(s, a) and the TD errors.
        """
        n = batch.rows
        x = np.concatenate([batch.obs, batch.next_obs]).astype(np.float32, copy=False)
        inputs, pre = [x], []  # each layer's input, and each hidden layer's pre-activation
        for i in range(0, len(params) - 2, 2):
            z = inputs[-1] @ params[i] + params[i + 1]
            pre.append(z)
            inputs.append(_leaky_relu(z))
        q_all = self._head(inputs[-1] @ params[-2] + params[-1])
        q, q_next_online = q_all[:n], q_all[n:]

        rows = np.arange(n)
        best_next = np.argmax(q_next_online, axis=1)
        q_next_target = self.q_values(target_params, batch.next_obs.astype(np.float32, copy=False))[rows, best_next]
        bootstrap = np.power(np.float32(gamma), batch.steps, dtype=np.float32) * ~batch.terminated
        y = batch.rewards.astype(np.float32) + bootstrap * q_next_target

        q_taken = q[rows, batch.actions]
        td = q_taken - y
        abs_td = np.abs(td)
        huber = np.where(abs_td <= 1.0, 0.5 * td * td, abs_td - 0.5)
        slope = np.clip(td, -1.0, 1.0) / n
        if weights is not None:
            huber, slope = huber * weights, slope * weights
        loss = float(np.add.reduce(huber)) / n

        dq = np.zeros_like(q)
        dq[rows, batch.actions] = slope
        grad = self._head_grad(dq)
        grads = out if out is not None else [np.empty_like(p) for p in params]
        for layer in range(len(params) // 2 - 1, -1, -1):
            h = inputs[layer][:n]
            np.matmul(h.T, grad, out=grads[2 * layer])
            np.add.reduce(grad, axis=0, out=grads[2 * layer + 1])
            if layer:
                z = pre[layer - 1][:n]
                grad = grad @ params[2 * layer].T
                grad = np.where(z > 0, grad, grad * NEGATIVE_SLOPE)
        return loss, grads, float(np.add.reduce(q_taken)) / n, td


@dataclass
class UpdateResult:
    loss: float
    mean_q: float
    grad_norm: float
    td_errors: np.ndarray


class DoubleDQN:
    """Online and target Q-networks with an Adam optimiser."""

    def __init__(self, net: QNetwork, *, learning_rate: float, gamma: float, max_grad_norm: float,
                 target_update_interval: int, seed: int):
        self.net = net
        initial = net.init(np.random.default_rng(seed))
        shapes = [p.shape for p in initial]
        self._flat = np.concatenate([p.ravel() for p in initial])
        self._target_flat = self._flat.copy()
        self._grad_flat = np.zeros_like(self._flat)
        self.params = flat_views(self._flat, shapes)
        self.target_params = flat_views(self._target_flat, shapes)
        self._grads = flat_views(self._grad_flat, shapes)
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.max_grad_norm = max_grad_norm
        self.target_update_interval = target_update_interval
        self.updates = 0
        self._m = np.zeros_like(self._flat)
        self._v = np.zeros_like(self._flat)
        self._scratch = np.zeros_like(self._flat)

    def update(self, batch: Transitions, weights: np.ndarray | None = None) -> UpdateResult:
        loss, _, mean_q, td = self.net.huber_loss_and_grads(self.params, self.target_params, batch, self.gamma,
                                                            weights, out=self._grads)
        grad_norm = float(np.sqrt(np.dot(self._grad_flat, self._grad_flat)))
        self._adam_step(min(1.0, self.max_grad_norm / (grad_norm + 1e-6)))
        self.updates += 1
        if self.updates % self.target_update_interval == 0:
            self.sync_target()
        return UpdateResult(loss, mean_q, grad_norm, td)

    def _adam_step(self, grad_scale: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        t = self.updates + 1
        step = self.learning_rate * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        g, m, v, scratch = self._grad_flat, self._m, self._v, self._scratch
        if grad_scale != 1.0:
            g *= grad_scale
        m *= beta1
        np.multiply(g, 1.0 - beta1, out=scratch)
        m += scratch
        v *= beta2
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - beta2
        v += scratch
        np.sqrt(v, out=scratch)
        scratch += eps
        np.divide(m, scratch, out=scratch)
        scratch *= step
        self._flat -= scratch

    def sync_target(self) -> None:
        np.copyto(self._target_flat, self._flat)

    def load(self, params: Params) -> None:
        """Restarts from given weights (online and target), e.g. the policy role's latest version."""
        for dst, src in zip(self.params, params):
            np.copyto(dst, src)
        self.sync_target()
