"""Q-networks and Double DQN in numpy: a leaky-ReLU MLP of any depth, an optional dueling head,
Huber loss, Adam, clipping.

float32 throughout and hand-written backprop: at CartPole sizes the cost is Python call
overhead, not FLOPs, so the update keeps the number of numpy calls small (one forward over
obs and next_obs stacked together, in-place Adam).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kuberl.config import LearnerSpec
from kuberl.tensors import Transitions

Params = list[np.ndarray]  # [W1, b1, W2, b2, ..., WL, bL]


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
        return out[:, :1] + advantages - advantages.mean(axis=1, keepdims=True)

    def _head_grad(self, dq: np.ndarray) -> np.ndarray:
        if not self.dueling:
            return dq
        return np.concatenate([dq.sum(axis=1, keepdims=True), dq - dq.mean(axis=1, keepdims=True)], axis=1)

    def q_values(self, params: Params, obs: np.ndarray) -> np.ndarray:
        """Q(s, .) for a batch of observations."""
        h = obs
        for i in range(0, len(params) - 2, 2):
            h = _leaky_relu(h @ params[i] + params[i + 1])
        return self._head(h @ params[-2] + params[-1])

    def greedy_actions(self, params: Params, obs: np.ndarray) -> np.ndarray:
        return np.argmax(self.q_values(params, np.asarray(obs, dtype=np.float32)), axis=1)

    def huber_loss_and_grads(self, params: Params, target_params: Params, batch: Transitions, gamma: float,
                             weights: np.ndarray | None = None) -> tuple[float, Params, float, np.ndarray]:
        """Double DQN: mean w * Huber(Q(s,a) - y), y = r + gamma**steps * (1 - terminated) * Q_target(s', argmax Q(s', .)),
        with importance weights w (prioritized replay; 1 without).

        Returns the loss, its gradient with respect to `params`, the mean Q(s, a) and the TD errors.
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
        loss = float(np.mean(huber))

        dq = np.zeros_like(q)
        dq[rows, batch.actions] = slope
        grad = self._head_grad(dq)
        grads: Params = [np.empty(0)] * len(params)
        for layer in range(len(params) // 2 - 1, -1, -1):
            h = inputs[layer][:n]
            grads[2 * layer], grads[2 * layer + 1] = h.T @ grad, grad.sum(axis=0)
            if layer:
                z = pre[layer - 1][:n]
                grad = (grad @ params[2 * layer].T) * np.where(z > 0, 1.0, NEGATIVE_SLOPE).astype(z.dtype)
        return loss, grads, float(q_taken.mean()), td


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
        self.params = net.init(np.random.default_rng(seed))
        self.target_params = [p.copy() for p in self.params]
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.max_grad_norm = max_grad_norm
        self.target_update_interval = target_update_interval
        self.updates = 0
        self._m = [np.zeros_like(p) for p in self.params]
        self._v = [np.zeros_like(p) for p in self.params]

    def update(self, batch: Transitions, weights: np.ndarray | None = None) -> UpdateResult:
        loss, grads, mean_q, td = self.net.huber_loss_and_grads(self.params, self.target_params, batch, self.gamma,
                                                                weights)
        grad_norm = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
        scale = min(1.0, self.max_grad_norm / (grad_norm + 1e-6))
        self._adam_step(grads, scale)
        self.updates += 1
        if self.updates % self.target_update_interval == 0:
            self.sync_target()
        return UpdateResult(loss, mean_q, grad_norm, td)

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
