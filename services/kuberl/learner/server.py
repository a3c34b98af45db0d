"""gRPC front of the learner: per experiment, a split-merge sampler thread prefetching batches
from every shard, and a training thread running Double DQN under the samples-per-insert limit."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from concurrent import futures

import grpc

from kuberl.config import ExperimentConfig, Manifest, from_proto
from kuberl.discovery import Discovery
from kuberl.envs import describe
from kuberl.learner.core import evaluate, merge_batches, split_counts, updates_allowed
from kuberl.metrics import MetricsReporter
from kuberl.nets import DoubleDQN, check_params
from kuberl.registry import Registry
from kuberl.rpc import NotFound, Server, require_experiment_id, rpc_errors, stub
from kuberl.tensors import Transitions, pack_weights, unpack_transitions, unpack_weights
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import common_pb2
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import learner_service_pb2 as pb
from kuberl.v1 import learner_service_pb2_grpc as pb_grpc
from kuberl.v1 import policy_service_pb2 as policy_pb
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc

log = logging.getLogger(__name__)

RPC_TIMEOUT = 10.0
PREFETCH_ROUNDS = 2
IDLE_WAIT = 0.01


class ShardSampler:
    """Split-merge sampling: each round asks every shard for its share, all requests in flight
    together, and merges the answers so that every batch holds rows from every shard."""

    def __init__(self, experiment_id: str, shards: Discovery):
        self.experiment_id = experiment_id
        self.shards = shards
        self.sizes: dict[str, int] = {}
        # Kept for shards that are down, so that env steps never go back.
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
        self.inserted[address] = max(stats.total_inserted, self.inserted.get(address, 0))
        self.sampled[address] = max(stats.total_sampled, self.sampled.get(address, 0))

    def refresh(self) -> None:
        """Asks every known shard for its stats (in parallel)."""
        addresses = self.shards.addresses()
        for gone in set(self.sizes) - set(addresses):
            self.sizes.pop(gone)
        calls = {a: stub(buffer_grpc.BufferServiceStub, a).GetStats.future(
            buffer_pb.GetStatsRequest(experiment_id=self.experiment_id), timeout=RPC_TIMEOUT) for a in addresses}
        for address, call in calls.items():
            try:
                self._record(address, call.result().stats)
            except grpc.RpcError:
                self.sizes[address] = 0  # not there yet, or down: absent until it answers

    def sample(self, batch_size: int, num_batches: int) -> list[Transitions] | None:
        """num_batches batches of batch_size, or None if no shard could serve."""
        while True:
            live = [a for a, size in self.sizes.items() if size > 0]
            counts = split_counts(batch_size, [self.sizes[a] for a in live])
            calls = {a: stub(buffer_grpc.BufferServiceStub, a).SampleBatch.future(
                buffer_pb.SampleBatchRequest(experiment_id=self.experiment_id, count=c * num_batches),
                timeout=RPC_TIMEOUT) for a, c in zip(live, counts) if c}
            if not calls:
                return None
            parts, failed = [], False
            for address, call in calls.items():
                try:
                    reply = call.result()
                except grpc.RpcError as err:
                    log.warning("%s: sampling %s failed: %s", self.experiment_id, address, err.code().name)
                    self.sizes[address] = 0
                    failed = True
                    continue
                self._record(address, reply.stats)
                parts.append(unpack_transitions(reply.batch))
            if not failed:
                return merge_batches(parts, [c for c in counts if c], num_batches)


class TrainingRun:
    """One experiment's learner state and threads."""

    def __init__(self, experiment_id: str, config: ExperimentConfig, buffer_target: str, policy_address: str,
                 metrics: MetricsReporter | None):
        self.experiment_id = experiment_id
        self.config = config
        self.policy_address = policy_address
        self.metrics = metrics
        shape = describe(config.env_id)
        self.shape = shape
        self.target_return = config.stop.target_return if config.stop.target_return is not None \
            else shape.reward_threshold
        lc = config.learner
        self.dqn = DoubleDQN(shape.obs_size, shape.num_actions, lc.hidden_sizes, learning_rate=lc.learning_rate,
                             gamma=lc.gamma, max_grad_norm=lc.max_grad_norm,
                             target_update_interval=lc.target_update_interval, seed=config.seed)
        self.sampler = ShardSampler(experiment_id, Discovery(buffer_target))
        self.policy_version = 0
        self.state = pb.TRAINING_STATE_WAITING_FOR_DATA
        self.message = ""
        self.last_loss = math.nan
        self.mean_q = math.nan
        self.eval_return = math.nan
        self._lock = threading.Lock()  # the network: training loop and on-demand TrainStep
        self._stop = threading.Event()
        self._batches: queue.Queue[list[Transitions]] = queue.Queue(maxsize=PREFETCH_ROUNDS)
        # Updates already paid for by the rate limit, each counter written by one thread only.
        self._batches_sampled = 0
        self._on_demand_updates = 0
        self._threads: list[threading.Thread] = []
        self._pusher = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"push-{experiment_id}")
        self._push_in_flight: futures.Future | None = None
        self._resume_from_policy()

    def _resume_from_policy(self) -> None:
        """A restarted learner continues from the newest weights the policy role holds."""
        try:
            reply = stub(policy_grpc.PolicyServiceStub, self.policy_address).GetPolicy(
                policy_pb.GetPolicyRequest(experiment_id=self.experiment_id, newer_than_version=-1),
                timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            log.warning("%s: policy role unreachable (%s); starting from fresh weights",
                        self.experiment_id, err.code().name)
            return
        if reply.updated:
            params = unpack_weights(reply.weights)
            check_params(params, self.shape.obs_size, self.shape.num_actions)
            self.dqn.load(params)
            self.policy_version = reply.weights.version
            log.info("%s: resumed from policy version %d", self.experiment_id, self.policy_version)

    # --- threads -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [threading.Thread(target=self._sample_loop, name=f"sample-{self.experiment_id}", daemon=True),
                         threading.Thread(target=self._train_loop, name=f"train-{self.experiment_id}", daemon=True)]
        for thread in self._threads:
            thread.start()
        log.info("%s: training started (target return %s, at most %d env steps)", self.experiment_id,
                 self.target_return, self.config.stop.max_env_steps)

    def reconfigure(self, config: ExperimentConfig) -> None:
        """Applies a changed config while training (e.g. samplesPerInsert patched in the spec).
        The network's shape cannot change under a running learner; that needs a new experiment."""
        if config.learner.hidden_sizes != self.config.learner.hidden_sizes:
            log.warning("%s: hiddenSizes cannot change while training; keeping %s", self.experiment_id,
                        self.config.learner.hidden_sizes)
            config = config.replace(learner={"hidden_sizes": self.config.learner.hidden_sizes})
        lc = config.learner
        with self._lock:
            self.dqn.learning_rate, self.dqn.gamma = lc.learning_rate, lc.gamma
            self.dqn.max_grad_norm, self.dqn.target_update_interval = lc.max_grad_norm, lc.target_update_interval
        self.config = config
        log.info("%s: config updated (samples per insert %g)", self.experiment_id, lc.samples_per_insert)

    def _sample_loop(self) -> None:
        try:
            # A restarted learner finds replay that was already sampled: the rate limit counts
            # from there, instead of paying the whole history's allowance out in one burst.
            self.sampler.refresh()
            self._batches_sampled = sum(self.sampler.sampled.values()) // self.config.learner.batch_size
            while not self._stop.is_set():
                lc = self.config.learner  # read each round: reconfigure() may replace it
                self.sampler.refresh()
                allowed = updates_allowed(self.sampler.env_steps, self._batches_sampled + self._on_demand_updates,
                                          samples_per_insert=lc.samples_per_insert, batch_size=lc.batch_size,
                                          learning_starts=lc.learning_starts)
                if allowed < 1:
                    self._stop.wait(IDLE_WAIT)
                    continue
                n = min(allowed, lc.batches_per_sample)
                batches = self.sampler.sample(lc.batch_size, n)
                if batches is None:
                    self._stop.wait(IDLE_WAIT)
                    continue
                self._batches_sampled += n
                while not self._stop.is_set():
                    try:
                        self._batches.put(batches, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        except Exception as err:
            self._fail(err)

    def _train_loop(self) -> None:
        last_report = time.monotonic()
        updates_at_report = self.dqn.updates
        try:
            while not self._stop.is_set():
                stop = self.config.stop  # read each round: reconfigure() may replace it
                if self.sampler.env_steps >= stop.max_env_steps:
                    if self.target_return is None:  # no target, no reward threshold: the budget was the goal
                        self._finish(pb.TRAINING_STATE_BUDGET_SPENT,
                                     f"{self.sampler.env_steps} env steps spent (no target return)")
                    else:
                        self._finish(pb.TRAINING_STATE_BUDGET_EXHAUSTED,
                                     f"{self.sampler.env_steps} env steps without reaching the target return "
                                     f"{self.target_return:g}")
                    return
                try:
                    batches = self._batches.get(timeout=0.1)
                except queue.Empty:
                    continue
                self.state = pb.TRAINING_STATE_TRAINING
                for batch in batches:
                    self._update(batch)
                    if self.dqn.updates % stop.eval_interval_updates == 0 and self._evaluate_and_check():
                        return
                now = time.monotonic()
                if self.metrics is not None and now - last_report >= 1.0:
                    self._report(now - last_report, self.dqn.updates - updates_at_report)
                    last_report, updates_at_report = now, self.dqn.updates
        except Exception as err:
            self._fail(err)

    def _update(self, batch: Transitions) -> None:
        with self._lock:
            result = self.dqn.update(batch)
        self.last_loss, self.mean_q = result.loss, result.mean_q
        if self.dqn.updates % self.config.learner.policy_push_interval == 0:
            self._push_policy(wait=False)

    def _evaluate_and_check(self) -> bool:
        """Greedy evaluation; True (and finished) when it meets the target return."""
        stop = self.config.stop
        with self._lock:
            params = [p.copy() for p in self.dqn.params]
        self.eval_return = evaluate(params, self.config.env_id, stop.eval_episodes,
                                    self.config.environment.max_episode_steps,
                                    seed=self.config.seed + 10_007 * (1 + self.dqn.updates))
        if self.metrics is not None:
            self.metrics.record(self.experiment_id, "charts/eval_return", self.eval_return, self.sampler.env_steps)
        log.info("%s: %d updates, %d env steps, greedy return %.1f", self.experiment_id, self.dqn.updates,
                 self.sampler.env_steps, self.eval_return)
        if self.target_return is not None and self.eval_return >= self.target_return:
            self._finish(pb.TRAINING_STATE_SOLVED, f"greedy return {self.eval_return:.1f} >= {self.target_return:g} "
                                                   f"after {self.sampler.env_steps} env steps")
            return True
        return False

    def _report(self, seconds: float, updates: int) -> None:
        assert self.metrics is not None
        step = self.sampler.env_steps
        for name, value in (("losses/td_loss", self.last_loss), ("losses/q_values", self.mean_q),
                            ("learner/updates_per_second", updates / seconds),
                            ("learner/policy_version", self.policy_version)):
            if math.isfinite(value):
                self.metrics.record(self.experiment_id, name, value, step)

    def _push_policy(self, wait: bool) -> None:
        """Sends the online weights to the policy role; a slow push is never queued behind another."""
        if not wait and self._push_in_flight is not None and not self._push_in_flight.done():
            return
        with self._lock:
            weights = pack_weights(self.dqn.params, self.policy_version + 1)
        self.policy_version += 1
        future = self._pusher.submit(self._send_policy, weights)
        self._push_in_flight = future
        if wait:
            future.result()

    def _send_policy(self, weights: object) -> None:
        try:
            stub(policy_grpc.PolicyServiceStub, self.policy_address).UpdatePolicy(
                policy_pb.UpdatePolicyRequest(experiment_id=self.experiment_id, weights=weights), timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            log.warning("%s: policy push failed: %s", self.experiment_id, err.code().name)

    def _finish(self, state: int, message: str) -> None:
        self.state, self.message = state, message
        log.info("%s: %s", self.experiment_id, message)
        self._push_policy(wait=True)
        self._stop.set()

    def _fail(self, err: Exception) -> None:
        log.exception("%s: training failed", self.experiment_id)
        self.state, self.message = pb.TRAINING_STATE_FAILED, f"{type(err).__name__}: {err}"
        self._stop.set()

    # --- on demand ---------------------------------------------------------------------------

    def train_now(self, num_updates: int) -> float:
        """num_updates updates on freshly sampled batches, ignoring the rate limit; seconds taken."""
        lc = self.config.learner
        started = time.perf_counter()
        self.sampler.refresh()
        done = 0
        while done < num_updates:
            batches = self.sampler.sample(lc.batch_size, min(lc.batches_per_sample, num_updates - done))
            if batches is None:
                raise NotFound(f"experiment {self.experiment_id!r}: no shard has transitions to sample")
            for batch in batches:
                self._update(batch)
            done += len(batches)
            self._on_demand_updates += len(batches)
        self._push_policy(wait=True)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.state in (pb.TRAINING_STATE_WAITING_FOR_DATA, pb.TRAINING_STATE_TRAINING):
            self.state, self.message = pb.TRAINING_STATE_STOPPED, "stopped on request"
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RPC_TIMEOUT + 5)
        self._pusher.shutdown(wait=True)

    def stats(self) -> pb.LearnerStats:
        return pb.LearnerStats(state=self.state, updates=self.dqn.updates, policy_version=self.policy_version,
                               env_steps=self.sampler.env_steps, last_loss=self.last_loss, mean_q=self.mean_q,
                               eval_return=self.eval_return, buffer_size=self.sampler.buffer_size,
                               message=self.message, shards=len(self.sampler.sizes))


class LearnerServicer(pb_grpc.LearnerServiceServicer):
    def __init__(self, role: LearnerRole):
        self.role = role

    @rpc_errors
    def StartTraining(self, request: pb.StartTrainingRequest, context: grpc.ServicerContext
                      ) -> pb.StartTrainingResponse:
        run = self.role.run(require_experiment_id(request.experiment_id), from_proto(request.config))
        run.start()
        return pb.StartTrainingResponse()

    @rpc_errors
    def StopTraining(self, request: pb.StopTrainingRequest, context: grpc.ServicerContext
                     ) -> pb.StopTrainingResponse:
        run = self.role.runs.get(require_experiment_id(request.experiment_id))
        run.stop()
        return pb.StopTrainingResponse(stats=run.stats())

    @rpc_errors
    def TrainStep(self, request: pb.TrainStepRequest, context: grpc.ServicerContext) -> pb.TrainStepResponse:
        if not 1 <= request.num_updates <= 1_000_000:
            raise ValueError(f"num_updates: must be in [1, 1000000], got {request.num_updates}")
        run = self.role.run(require_experiment_id(request.experiment_id), from_proto(request.config))
        seconds = run.train_now(request.num_updates)
        return pb.TrainStepResponse(stats=run.stats(), seconds=seconds)

    @rpc_errors
    def GetLearnerStats(self, request: pb.GetLearnerStatsRequest, context: grpc.ServicerContext
                        ) -> pb.GetLearnerStatsResponse:
        return pb.GetLearnerStatsResponse(stats=self.role.runs.get(require_experiment_id(request.experiment_id)).stats())

    @rpc_errors
    def ReleaseExperiment(self, request: common_pb2.ReleaseExperimentRequest, context: grpc.ServicerContext
                          ) -> common_pb2.ReleaseExperimentResponse:
        self.role.release(require_experiment_id(request.experiment_id))
        return common_pb2.ReleaseExperimentResponse()


class LearnerRole:
    def __init__(self, buffer_target: str, policy_address: str, metrics: MetricsReporter | None):
        self.buffer_target = buffer_target
        self.policy_address = policy_address
        self.metrics = metrics
        self.runs: Registry[TrainingRun] = Registry("is not known to this learner")

    def run(self, experiment_id: str, config: ExperimentConfig) -> TrainingRun:
        """The experiment's run, created from its config on first use."""
        return self.runs.get_or_create(experiment_id, lambda: TrainingRun(
            experiment_id, config, self.buffer_target, self.policy_address, self.metrics))

    def follow(self, manifest: Manifest) -> None:
        """Serves an experiment file's version (cluster mode): starts training it, or gives the
        running learner the new config (its optimiser and network stay)."""
        run = self.runs.find(manifest.experiment_id)
        if run is None:
            self.run(manifest.experiment_id, manifest.config).start()
        else:
            run.reconfigure(manifest.config)

    def release(self, experiment_id: str) -> None:
        """Stops and forgets the experiment's run: the id may start a new one, with any config."""
        run = self.runs.find(experiment_id)
        if run is not None:
            self.runs.pop(experiment_id)
            run.stop()
            log.info("%s: released", experiment_id)

    def stop(self) -> None:
        for run in self.runs.values():
            run.stop()
        if self.metrics is not None:
            self.metrics.close()


def create_server(port: int, buffer_target: str, policy_address: str, metrics: MetricsReporter | None,
                  host: str = "[::]") -> tuple[Server, LearnerRole]:
    role = LearnerRole(buffer_target, policy_address, metrics)
    server = Server(LearnerServicer(role), pb_grpc.add_LearnerServiceServicer_to_server, pb.DESCRIPTOR, port, host)
    return server, role
