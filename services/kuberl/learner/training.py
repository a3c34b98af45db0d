"""One experiment's training, split by what owns which state: the `RateLimitedSampler` owns
the shards' sampler and what the samples-per-insert limit has paid out; the `Trainer` owns the
network; the `Publisher` owns the policy version and its push thread; the `Evaluator` owns the
latest greedy return. `TrainingRun` runs them on two threads (sampling, training) and owns the
verdict: the stop rule is applied here and nowhere else."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from kuberl.config import ExperimentConfig, LearnerSpec, to_proto
from kuberl.discovery import Discovery
from kuberl.envs import describe
from kuberl.learner.core import evaluate, importance_weights, merge_batches, merge_rows, split_counts, updates_allowed
from kuberl.metrics import MetricsReporter
from kuberl.policy.core import Evaluation
from kuberl.nets import DoubleDQN, Params, QNetwork
from kuberl.rpc import FailedPrecondition, NotFound, stub
from kuberl.sizes import describe_problems, environment_problems
from kuberl.tensors import Transitions, pack, pack_weights, unpack_transitions, unpack_vector, unpack_weights
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import common_pb2
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import learner_service_pb2 as pb
from kuberl.v1 import policy_service_pb2 as policy_pb
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc

log = logging.getLogger(__name__)

RPC_TIMEOUT = 10.0
PREFETCH_ROUNDS = 2
IDLE_WAIT = 0.01
REFRESH_SECONDS = 1.0
RUNNING_STATES = (pb.TRAINING_STATE_WAITING_FOR_DATA, pb.TRAINING_STATE_TRAINING)


class ShardSampler:
    """Split-merge sampling: each round asks every shard for its share, all requests in flight
    together, and merges the answers so that every batch holds rows from every shard."""

    def __init__(self, experiment_id: str, shards: Discovery):
        self.experiment_id = experiment_id
        self.shards = shards
        # Blocking calls on a standing pool: a grpc future starts a thread of its own each time
        # its channel is idle, which at hundreds of rounds a second is a quarter of the learner.
        self._calls = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"shards-{experiment_id}")
        self.sizes: dict[str, int] = {}
        # Kept for shards that are down, so that env steps never go back.
        self.masses: dict[str, float] = {}  # priority mass (prioritized replay), else the size
        self.inserted: dict[str, int] = {}
        self.sampled: dict[str, int] = {}

    @property
    def env_steps(self) -> int:
        return sum(self.inserted.values())

    @property
    def buffer_size(self) -> int:
        return sum(self.sizes.values())

    def _record(self, address: str, stats: buffer_pb.ReplayStats) -> None:
        self.sizes[address] = stats.size
        self.masses[address] = stats.priority_mass if stats.priority_mass > 0 else float(stats.size)
        self.inserted[address] = max(stats.total_inserted, self.inserted.get(address, 0))
        self.sampled[address] = max(stats.total_sampled, self.sampled.get(address, 0))

    def refresh(self) -> None:
        """Asks every known shard for its stats (in parallel)."""
        addresses = self.shards.addresses()
        for gone in set(self.sizes) - set(addresses):
            self.sizes.pop(gone)
        calls = self._call_each("GetStats", {a: buffer_pb.GetStatsRequest(experiment_id=self.experiment_id)
                                             for a in addresses})
        for address, call in calls.items():
            try:
                self._record(address, call.result().stats)
            except grpc.RpcError:
                self.sizes[address] = 0  # not there yet, or down: absent until it answers

    def _call_each(self, method: str, requests: dict[str, Any]) -> dict[str, futures.Future]:
        """One call per shard, all in flight together; each result() raises grpc.RpcError as the call would."""
        return {a: self._calls.submit(getattr(stub(buffer_grpc.BufferServiceStub, a), method), request,
                                      timeout=RPC_TIMEOUT) for a, request in requests.items()}

    def close(self) -> None:
        self._calls.shutdown(wait=False, cancel_futures=True)

    def send_priorities(self, updates: dict[str, tuple[list[np.ndarray], list[np.ndarray]]]) -> None:
        """New priorities to each shard, without waiting: a lost update only leaves a row's old one."""
        calls = self._call_each("UpdatePriorities", {
            address: buffer_pb.UpdatePrioritiesRequest(
                experiment_id=self.experiment_id, keys=pack(np.concatenate(keys)),
                priorities=pack(np.concatenate(priorities).astype(np.float32, copy=False)))
            for address, (keys, priorities) in updates.items()})
        for address, call in calls.items():
            call.add_done_callback(lambda done, a=address: self._log_failure(a, done))

    def _log_failure(self, address: str, call: futures.Future) -> None:
        if not call.cancelled() and isinstance(call.exception(), grpc.RpcError):
            log.warning("%s: priorities to %s failed: %s", self.experiment_id, address, call.exception().code().name)

    def sample(self, batch_size: int, num_batches: int, importance_exponent: float | None = None) -> list[Draw] | None:
        """num_batches batches of batch_size, or None if no shard could serve. With an
        importance exponent (prioritized replay), split by the shards' priority mass and each
        batch weighted for the bias of prioritized draws."""
        prioritized = importance_exponent is not None
        while True:
            live = [a for a, size in self.sizes.items() if size > 0]
            counts = split_counts(batch_size, [self.masses.get(a, self.sizes[a]) if prioritized else self.sizes[a]
                                               for a in live])
            # The totals, this round's draws included, let each shard's insert limit count its
            # share of the experiment's draws.
            inserted = sum(self.inserted.values())
            sampled = sum(self.sampled.values()) + batch_size * num_batches
            calls = self._call_each("SampleBatch", {
                a: buffer_pb.SampleBatchRequest(experiment_id=self.experiment_id, count=c * num_batches,
                                                experiment_inserted=inserted, experiment_sampled=sampled)
                for a, c in zip(live, counts) if c})
            if not calls:
                return None
            replies, failed = {}, False
            for address, call in calls.items():
                try:
                    replies[address] = call.result()
                except grpc.RpcError as err:
                    log.warning("%s: sampling %s failed: %s", self.experiment_id, address, err.code().name)
                    self.sizes[address] = 0
                    failed = True
                    continue
                self._record(address, replies[address].stats)
            if failed:
                continue
            used = [c for c in counts if c]
            batches = merge_batches([unpack_transitions(r.batch) for r in replies.values()], used, num_batches)
            if importance_exponent is None:
                return [Draw(b) for b in batches]
            return self._weighted(batches, replies, used, batch_size, importance_exponent)

    def _weighted(self, batches: list[Transitions], replies: dict[str, buffer_pb.SampleBatchResponse],
                  counts: list[int], batch_size: int, exponent: float) -> list[Draw]:
        keys, probabilities = [], []
        for (address, reply), count in zip(replies.items(), counts):
            rows = count * len(batches)
            if reply.HasField("keys") and reply.HasField("probabilities"):
                keys.append(unpack_vector(reply.keys, "keys", np.int64))
                within = unpack_vector(reply.probabilities, "probabilities", np.float32).astype(np.float64)
                if len(keys[-1]) != rows or len(within) != rows:
                    raise ValueError(f"{address}: {len(keys[-1])} keys and {len(within)} probabilities "
                                     f"for {rows} rows")
            else:  # a shard not (yet) told to prioritize samples uniformly; its rows' keys are none
                keys.append(np.full(rows, -1, np.int64))
                within = np.full(rows, 1.0 / max(self.sizes[address], 1))
            probabilities.append(within * count / batch_size)  # the split gives this shard count of every batch
        merged_keys = merge_rows(keys, counts, len(batches))
        weights = importance_weights(merge_rows(probabilities, counts, len(batches)), self.buffer_size, exponent)
        starts = np.cumsum([0, *counts])
        return [Draw(batch, weights[i], [(address, merged_keys[i, lo:hi])
                                         for address, lo, hi in zip(replies, starts[:-1], starts[1:])])
                for i, batch in enumerate(batches)]


@dataclass
class Draw:
    """A batch to learn from; with prioritized replay, its importance weights and, shard by
    shard, the keys of its rows (in batch order) for their new priorities."""

    batch: Transitions
    weights: np.ndarray | None = None
    segments: list[tuple[str, np.ndarray]] = field(default_factory=list)


class RateLimitedSampler:
    """The shards' sampler and the batches the rate limit has paid out (to the training loop
    and on demand alike: both count against the same samples-per-insert allowance). Every
    draw goes through here, one at a time."""

    def __init__(self, experiment_id: str, shards: Discovery):
        self._shards = ShardSampler(experiment_id, shards)
        self._refreshed = -math.inf
        self._drawn = 0
        self._lock = threading.Lock()
        # What other threads read (stats), published after each round: reading them never
        # waits behind a sampling call.
        self.env_steps = self.buffer_size = self.shard_count = 0
        self.rate_limited = 0  # rounds the samples-per-insert limit made the learner wait

    def _publish(self) -> None:
        self.env_steps, self.buffer_size = self._shards.env_steps, self._shards.buffer_size
        self.shard_count = len(self._shards.sizes)

    def refresh(self) -> None:
        with self._lock:
            self._shards.refresh()
            self._publish()

    def count_what_was_sampled(self, batch_size: int) -> None:
        """A restarted learner finds replay that was already sampled: the limit counts from
        there, instead of paying the whole history's allowance out in one burst."""
        with self._lock:
            self._shards.refresh()
            self._drawn = sum(self._shards.sampled.values()) // batch_size
            self._publish()

    def draw_allowed(self, config: ExperimentConfig) -> list[Draw] | None:
        """Up to batchesPerSample batches if the limit allows any and a shard can serve.

        Every SampleBatch answer carries its shard's counters, so the shards are asked for
        their stats only when the limit says wait, and every REFRESH_SECONDS to find new ones."""
        lc = config.learner
        with self._lock:
            allowed = self._allowed(lc)
            if allowed < 1 or time.monotonic() - self._refreshed >= REFRESH_SECONDS:
                self._shards.refresh()
                self._refreshed = time.monotonic()
                self._publish()
                allowed = self._allowed(lc)
            if allowed < 1:
                self.rate_limited += 1
                return None
            return self._draw(config, min(allowed, lc.batches_per_sample))

    def _allowed(self, lc: LearnerSpec) -> int:
        return updates_allowed(self._shards.env_steps, self._drawn, samples_per_insert=lc.samples_per_insert,
                               batch_size=lc.batch_size, learning_starts=lc.learning_starts)

    def close(self) -> None:
        self._shards.close()

    def draw_now(self, config: ExperimentConfig, count: int) -> list[Draw] | None:
        """`count` batches whatever the limit says (TrainStep); they count against it."""
        with self._lock:
            return self._draw(config, count)

    def send_priorities(self, draws: list[Draw], td_errors: list[np.ndarray]) -> None:
        """Each row's |TD error| to the shard it came from, one call per shard."""
        updates: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for draw, td in zip(draws, td_errors):
            start = 0
            for address, keys in draw.segments:
                shard = updates.setdefault(address, ([], []))
                shard[0].append(keys)
                shard[1].append(np.abs(td[start:start + len(keys)]))
                start += len(keys)
        if updates:
            self._shards.send_priorities(updates)

    def _draw(self, config: ExperimentConfig, count: int) -> list[Draw] | None:
        buffer = config.buffer
        batches = self._shards.sample(config.learner.batch_size, count,
                                      buffer.importance_exponent if buffer.prioritized else None)
        if batches is not None:
            self._drawn += len(batches)
        self._publish()
        return batches


class Trainer:
    """The network, and the loss and mean Q of its last update."""

    def __init__(self, dqn: DoubleDQN):
        self._dqn = dqn
        self.last_loss = math.nan
        self.mean_q = math.nan
        self._lock = threading.Lock()  # the training loop and on-demand TrainStep both update

    @property
    def updates(self) -> int:
        return self._dqn.updates

    def update(self, draw: Draw) -> tuple[int, np.ndarray]:
        """One update; returns the update count after it and the batch's TD errors."""
        with self._lock:
            result = self._dqn.update(draw.batch, draw.weights)
            self.last_loss, self.mean_q = result.loss, result.mean_q
            return self._dqn.updates, result.td_errors

    def params(self) -> Params:
        """A copy of the online weights, safe to read while training goes on."""
        with self._lock:
            return [p.copy() for p in self._dqn.params]

    def load(self, params: Params) -> None:
        with self._lock:
            self._dqn.load(params)

    def reconfigure(self, lc: LearnerSpec) -> None:
        with self._lock:
            self._dqn.learning_rate, self._dqn.gamma = lc.learning_rate, lc.gamma
            self._dqn.max_grad_norm, self._dqn.target_update_interval = lc.max_grad_norm, lc.target_update_interval


class Publisher:
    """The policy version and the thread that pushes weights to the policy role; a slow push is
    never queued behind another."""

    def __init__(self, experiment_id: str, policy_address: str):
        self.experiment_id = experiment_id
        self.policy_address = policy_address
        self.version = 0
        self._lock = threading.Lock()
        self._pusher = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"push-{experiment_id}")
        self._in_flight: futures.Future | None = None

    def resume(self) -> tuple[int, Params] | None:
        """The newest weights the policy role holds for the experiment (a restarted learner
        continues from them), or None."""
        try:
            reply = stub(policy_grpc.PolicyServiceStub, self.policy_address).GetPolicy(
                policy_pb.GetPolicyRequest(experiment_id=self.experiment_id, newer_than_version=-1),
                timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            log.warning("%s: policy role unreachable (%s); starting from fresh weights",
                        self.experiment_id, err.code().name)
            return None
        if not reply.updated:
            return None
        with self._lock:
            self.version = reply.weights.version
        return reply.weights.version, unpack_weights(reply.weights)

    def publish(self, trainer: Trainer, wait: bool, skip_if_busy: bool = True) -> tuple[int, Params] | None:
        """Sends the trainer's weights as the next version and returns (version, weights).
        Without `wait`, skipped (before any copy is made, returning None) while a push is in
        flight, unless not `skip_if_busy`: then queued behind it."""
        with self._lock:
            if not wait and skip_if_busy and self._in_flight is not None and not self._in_flight.done():
                return None
            self.version += 1
            version, params = self.version, trainer.params()
            future = self._pusher.submit(self._send, pack_weights(params, version))
            self._in_flight = future
        if wait:
            future.result()
        return version, params

    def keep_result(self, version: int, params: Params, evaluation: Evaluation, config: ExperimentConfig) -> None:
        """Marks a published version as the experiment's result, with the config that trained it
        (so that it can be used once the experiment is gone). On the push thread, so that it
        follows that version's own push."""
        request = policy_pb.UpdatePolicyRequest(
            experiment_id=self.experiment_id, weights=pack_weights(params, version),
            result=policy_pb.Evaluation(mean_return=evaluation.mean_return, episodes=evaluation.episodes,
                                        env_steps=evaluation.env_steps), config=to_proto(config))
        self._pusher.submit(self._call, request).result()

    def resume_result(self) -> tuple[int, Params, Evaluation] | None:
        """The result the policy role holds for the experiment, or None."""
        try:
            reply = stub(policy_grpc.PolicyServiceStub, self.policy_address).GetPolicy(
                policy_pb.GetPolicyRequest(experiment_id=self.experiment_id, result=True), timeout=RPC_TIMEOUT)
        except grpc.RpcError:
            return None  # none yet (NOT_FOUND), or unreachable: resume() has said so
        e = reply.evaluation
        return reply.weights.version, unpack_weights(reply.weights), Evaluation(e.mean_return, e.episodes,
                                                                                e.env_steps)

    def _send(self, weights: common_pb2.PolicyWeights) -> None:
        self._call(policy_pb.UpdatePolicyRequest(experiment_id=self.experiment_id, weights=weights))

    def _call(self, request: policy_pb.UpdatePolicyRequest) -> None:
        try:
            stub(policy_grpc.PolicyServiceStub, self.policy_address).UpdatePolicy(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            log.warning("%s: policy push failed: %s", self.experiment_id, err.code().name)

    def close(self) -> None:
        self._pusher.shutdown(wait=True)


@dataclass(frozen=True)
class Candidate:
    """A published version handed to the evaluator, with when it was made."""

    version: int
    params: Params
    updates: int
    env_steps: int


# Every evaluation plays the same episodes (fixed seeds, as evaluation callbacks do), so that
# versions are compared on equal terms; the confirmation's are other ones, fresh to the choice.
EVAL_SEED_OFFSET = 10_007
CONFIRM_SEED_OFFSET = 1_000_003


class Evaluator:
    """Greedy evaluation on a thread of its own: the training loop hands over a published
    version and goes on. Keeps the best evaluated version as the experiment's result (the
    policy role stores it as such), and applies the confirmation a solve needs: an evaluation at
    the target counts only when stop.confirmEpisodes fresh episodes with other seeds agree, so
    that what a run leaves is never a lucky ten episodes."""

    def __init__(self, run: TrainingRun):
        self._run = run
        self.eval_return = math.nan
        self.result: tuple[int, Evaluation] | None = None  # (version, the evaluation that chose it)
        self._best: Candidate | None = None
        self._best_return = -math.inf  # the periodic evaluations' score the result was chosen by
        self._pending: queue.Queue[Candidate] = queue.Queue(maxsize=1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self, version: int, params: Params, evaluation: Evaluation) -> None:
        """A restarted learner keeps the result the policy role holds until it finds a better one."""
        self._best = Candidate(version, params, 0, evaluation.env_steps)
        self._best_return, self.result = evaluation.mean_return, (version, evaluation)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"evaluate-{self._run.experiment_id}", daemon=True)
        self._thread.start()

    def submit(self, candidate: Candidate) -> None:
        """Never blocks: a version still waiting is replaced by the newer one."""
        try:
            self._pending.get_nowait()
        except queue.Empty:
            pass
        self._pending.put_nowait(candidate)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=RPC_TIMEOUT + 60)

    def _loop(self) -> None:
        while not self._stop.is_set() and not self._run.ended:
            try:
                candidate = self._pending.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._evaluate(candidate)
            except Exception as err:
                self._run.fail(err)
                return

    def _greedy(self, candidate: Candidate, episodes: int, seed_offset: int = EVAL_SEED_OFFSET) -> float:
        cfg = self._run.config
        return evaluate(self._run.net, candidate.params, cfg.env_id, episodes, cfg.environment.max_episode_steps,
                        seed=cfg.seed + seed_offset, env_kwargs=cfg.env_kwargs)

    def _record(self, name: str, value: float, env_steps: int) -> None:
        if self._run.metrics is not None:
            self._run.metrics.record(self._run.experiment_id, name, value, env_steps)

    def _evaluate(self, candidate: Candidate) -> None:
        stop, target = self._run.config.stop, self._run.target_return
        greedy = self._greedy(candidate, stop.eval_episodes)
        self.eval_return = greedy
        self._record("charts/eval_return", greedy, candidate.env_steps)
        log.info("%s: version %d (%d updates, %d env steps): greedy return %.1f", self._run.experiment_id,
                 candidate.version, candidate.updates, candidate.env_steps, greedy)
        if greedy > self._best_return:
            self._best_return = greedy
            self._keep(candidate, Evaluation(greedy, stop.eval_episodes, candidate.env_steps))
        if target is None or greedy < target:
            return
        confirmed = self._greedy(candidate, stop.confirm_episodes, CONFIRM_SEED_OFFSET)
        self._record("charts/confirmed_return", confirmed, candidate.env_steps)
        if confirmed < target:
            log.info("%s: version %d not confirmed: %.1f over %d fresh episodes < %g; training goes on",
                     self._run.experiment_id, candidate.version, confirmed, stop.confirm_episodes, target)
            return
        self._keep(candidate, Evaluation(confirmed, stop.confirm_episodes, candidate.env_steps))
        self._run.solved(f"greedy return {greedy:.1f} >= {target:g} after {candidate.env_steps} env steps, "
                         f"confirmed by {confirmed:.1f} over {stop.confirm_episodes} fresh episodes "
                         f"(result: version {candidate.version})")

    def confirm_result(self) -> None:
        """At the end of a run that did not solve: the result scored as a solve's would be."""
        episodes = self._run.config.stop.confirm_episodes
        if self._best is None or self.result is None or self.result[1].episodes >= episodes:
            return
        self._keep(self._best, Evaluation(self._greedy(self._best, episodes, CONFIRM_SEED_OFFSET), episodes,
                                          self._best.env_steps))

    def _keep(self, candidate: Candidate, evaluation: Evaluation) -> None:
        with self._lock:
            self._best, self.result = candidate, (candidate.version, evaluation)
        self._run.publisher.keep_result(candidate.version, candidate.params, evaluation, self._run.config)


class TrainingRun:
    """One experiment's learner: its parts, its two threads, and its verdict."""

    def __init__(self, experiment_id: str, config: ExperimentConfig, buffer_target: str, policy_address: str,
                 metrics: MetricsReporter | None):
        self.experiment_id = experiment_id
        self.config = config
        self.metrics = metrics
        self.shape = describe(config.env_id, config.env_kwargs)
        self.target_return = config.stop.target_return if config.stop.target_return is not None \
            else self.shape.reward_threshold
        lc = config.learner
        self.net = QNetwork.of(lc, self.shape.obs_size, self.shape.num_actions)
        self.trainer = Trainer(DoubleDQN(self.net, learning_rate=lc.learning_rate, gamma=lc.gamma,
                                         max_grad_norm=lc.max_grad_norm,
                                         target_update_interval=lc.target_update_interval, seed=config.seed))
        self.sampler = RateLimitedSampler(experiment_id, Discovery(buffer_target))
        self.publisher = Publisher(experiment_id, policy_address)
        self.evaluator = Evaluator(self)
        self.state = pb.TRAINING_STATE_WAITING_FOR_DATA
        self.message = ""
        problems = environment_problems(config, self.shape.obs_size, self.shape.num_actions)
        if problems:  # ended before it began: the status says which fields, nothing trains
            self.state, self.message = pb.TRAINING_STATE_INVALID_SPEC, describe_problems(problems)
            log.error("%s: %s", experiment_id, self.message)
        self._verdict_lock = threading.Lock()
        self._stop = threading.Event()
        self._batches: queue.Queue[list[Draw]] = queue.Queue(maxsize=PREFETCH_ROUNDS)
        self._threads: list[threading.Thread] = []
        resumed = None if self.ended else self.publisher.resume()
        if resumed is not None:
            version, params = resumed
            self.net.check(params)
            self.trainer.load(params)
            log.info("%s: resumed from policy version %d", experiment_id, version)
            result = self.publisher.resume_result()
            if result is not None:
                self.evaluator.restore(*result)

    # --- the verdict -------------------------------------------------------------------------

    def _finish(self, state: int, message: str) -> bool:
        """Records the run's end once; False when it had already ended."""
        with self._verdict_lock:
            if self.state not in RUNNING_STATES:
                return False
            self.state, self.message = state, message
        log.info("%s: %s", self.experiment_id, message)
        self._stop.set()
        return True

    def _budget_spent(self) -> None:
        # The result is scored and stored before the verdict: whoever sees the verdict may tear
        # the roles down at once (kuberl run does), and the result must be there by then.
        self.evaluator.stop()
        if self.ended:  # the evaluator's last version solved it
            return
        self.evaluator.confirm_result()
        self.publisher.publish(self.trainer, wait=True)
        steps = self.sampler.env_steps
        if self.target_return is None:  # no target, no reward threshold: the budget was the goal
            self._finish(pb.TRAINING_STATE_BUDGET_SPENT, f"{steps} env steps spent (no target return)")
        else:
            self._finish(pb.TRAINING_STATE_BUDGET_EXHAUSTED, f"{steps} env steps without reaching the target return "
                                                            f"{self.target_return:g}")

    def solved(self, message: str) -> None:
        """The evaluator's verdict: a confirmed evaluation at the target."""
        if self._finish(pb.TRAINING_STATE_SOLVED, message):
            self.publisher.publish(self.trainer, wait=True)

    def fail(self, err: Exception) -> None:
        log.exception("%s: training failed", self.experiment_id)
        self._finish(pb.TRAINING_STATE_FAILED, f"{type(err).__name__}: {err}")

    # --- threads -----------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.state not in RUNNING_STATES

    def _require_running(self) -> None:
        if self.ended:
            raise FailedPrecondition(f"experiment {self.experiment_id!r} has ended ({pb.TrainingState.Name(self.state)}"
                                     f"): its run keeps its results until it is released")

    def start(self) -> None:
        self._require_running()
        if self._threads:
            return
        self._threads = [threading.Thread(target=self._sample_loop, name=f"sample-{self.experiment_id}", daemon=True),
                         threading.Thread(target=self._train_loop, name=f"train-{self.experiment_id}", daemon=True)]
        for thread in self._threads:
            thread.start()
        self.evaluator.start()
        log.info("%s: training started (target return %s, at most %d env steps)", self.experiment_id,
                 self.target_return, self.config.stop.max_env_steps)

    def reconfigure(self, config: ExperimentConfig) -> None:
        """Applies a changed config while training (e.g. samplesPerInsert patched in the spec).
        The network's shape cannot change under a running learner; that needs a new experiment."""
        if QNetwork.of(config.learner, self.net.obs_size, self.net.num_actions) != self.net:
            log.warning("%s: hiddenSizes and dueling cannot change while training; keeping %s", self.experiment_id,
                        self.net)
            config = config.replace(learner={"hidden_sizes": list(self.net.hidden_sizes),
                                             "dueling": self.net.dueling})
        self.trainer.reconfigure(config.learner)
        self.config = config
        log.info("%s: config updated (samples per insert %g)", self.experiment_id, config.learner.samples_per_insert)

    def _sample_loop(self) -> None:
        try:
            self.sampler.count_what_was_sampled(self.config.learner.batch_size)
            while not self._stop.is_set():
                batches = self.sampler.draw_allowed(self.config)  # read each round: reconfigure()
                if batches is None:
                    self._stop.wait(IDLE_WAIT)
                    continue
                while not self._stop.is_set():
                    try:
                        self._batches.put(batches, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        except Exception as err:
            self.fail(err)

    def _train_loop(self) -> None:
        last_report, updates_at_report = time.monotonic(), self.trainer.updates
        waited = 0.0  # seconds since the last report the update thread had no batch to learn from
        try:
            while not self._stop.is_set():
                stop = self.config.stop  # read each round: reconfigure() may replace it
                if self.sampler.env_steps >= stop.max_env_steps:
                    self._budget_spent()
                    return
                wait_started = time.monotonic()
                try:
                    batches = self._batches.get(timeout=0.1)
                except queue.Empty:
                    continue
                finally:
                    waited += time.monotonic() - wait_started
                if self.state == pb.TRAINING_STATE_WAITING_FOR_DATA:
                    with self._verdict_lock:
                        if self.state == pb.TRAINING_STATE_WAITING_FOR_DATA:
                            self.state = pb.TRAINING_STATE_TRAINING
                self._learn(batches)
                now = time.monotonic()
                if self.metrics is not None and now - last_report >= 1.0:
                    self._report(now - last_report, self.trainer.updates - updates_at_report, waited)
                    last_report, updates_at_report, waited = now, self.trainer.updates, 0.0
        except Exception as err:
            self.fail(err)

    def _hand_to_evaluator(self, updates: int) -> None:
        published = self.publisher.publish(self.trainer, wait=False, skip_if_busy=False)
        assert published is not None  # not skipped: queued behind a push in flight
        self.evaluator.submit(Candidate(*published, updates, self.sampler.env_steps))

    def _learn(self, draws: list[Draw]) -> None:
        """One update per batch; weights published and versions handed to the evaluator at
        their intervals; with prioritized replay, the rows' new priorities sent back."""
        td_errors = []
        for draw in draws:
            updates, td = self.trainer.update(draw)
            td_errors.append(td)
            if updates % self.config.learner.policy_push_interval == 0:
                self.publisher.publish(self.trainer, wait=False)
            if updates % self.config.stop.eval_interval_updates == 0:
                self._hand_to_evaluator(updates)
        self.sampler.send_priorities(draws, td_errors)

    def _report(self, seconds: float, updates: int, waited: float) -> None:
        assert self.metrics is not None
        step = self.sampler.env_steps
        # waiting_for_data says what holds training: near 0 the update itself (the learner is the
        # bottleneck), near 1 the data (the samples-per-insert limit, or sampling round trips).
        for name, value in (("losses/td_loss", self.trainer.last_loss), ("losses/q_values", self.trainer.mean_q),
                            ("learner/updates_per_second", updates / seconds),
                            ("learner/waiting_for_data", min(1.0, waited / seconds)),
                            ("learner/policy_version", self.publisher.version)):
            if math.isfinite(value):
                self.metrics.record(self.experiment_id, name, value, step)

    # --- on demand ---------------------------------------------------------------------------

    def train_now(self, num_updates: int) -> float:
        """num_updates updates on freshly sampled batches, ignoring the rate limit; seconds taken."""
        self._require_running()
        lc = self.config.learner
        started = time.perf_counter()
        self.sampler.refresh()
        done = 0
        while done < num_updates:
            batches = self.sampler.draw_now(self.config, min(lc.batches_per_sample, num_updates - done))
            if batches is None:
                raise NotFound(f"experiment {self.experiment_id!r}: no shard has transitions to sample")
            self._learn(batches)
            done += len(batches)
        self.publisher.publish(self.trainer, wait=True)
        return time.perf_counter() - started

    def stop(self) -> None:
        self._finish(pb.TRAINING_STATE_STOPPED, "stopped on request")
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RPC_TIMEOUT + 5)
        self.evaluator.stop()
        self.publisher.close()
        self.sampler.close()

    @property
    def prefetched_rounds(self) -> int:
        """Sampled rounds waiting for the update thread (at most PREFETCH_ROUNDS)."""
        return self._batches.qsize()

    def stats(self) -> pb.LearnerStats:
        return pb.LearnerStats(state=self.state, updates=self.trainer.updates, policy_version=self.publisher.version,
                               env_steps=self.sampler.env_steps, last_loss=self.trainer.last_loss,
                               mean_q=self.trainer.mean_q, eval_return=self.evaluator.eval_return,
                               buffer_size=self.sampler.buffer_size, message=self.message,
                               shards=self.sampler.shard_count, **self._result_fields())

    def _result_fields(self) -> dict[str, float | int]:
        result = self.evaluator.result
        if result is None:
            return {"result_version": -1, "result_return": math.nan, "result_episodes": 0}
        version, evaluation = result
        return {"result_version": version, "result_return": evaluation.mean_return,
                "result_episodes": evaluation.episodes}
