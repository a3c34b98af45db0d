"""gRPC front of the environment role: one rollout thread and one sender thread per experiment."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator

import grpc

from kuberl.config import ExperimentConfig, Manifest, from_proto, to_proto
from kuberl.discovery import Discovery
from kuberl.environment.core import RECENT_EPISODES, Actor
from kuberl.metrics import MetricsReporter
from kuberl.prometheus import Metric, counter, gauge
from kuberl.registry import Registry
from kuberl.rpc import Server, require_experiment_id, rpc_errors, stub
from kuberl.tensors import Transitions, pack_transitions, unpack_weights
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import environment_service_pb2 as pb
from kuberl.v1 import environment_service_pb2_grpc as pb_grpc
from kuberl.v1 import policy_service_pb2 as policy_pb
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc

log = logging.getLogger(__name__)

QUEUE_BATCHES = 8
PUSH_TIMEOUT_SECONDS = 10.0


def _wait_unless_stopping(call: grpc.Future, stopping: threading.Event) -> bool:
    """Waits for an RPC; cancels it and returns False if `stopping` is set first. A push can
    wait seconds on a shard's rate limiter, and StopRollout must not wait for that."""
    done = threading.Event()
    call.add_done_callback(lambda _: done.set())
    while not done.wait(0.1):
        if stopping.is_set():
            call.cancel()
            return False
    return True


class ShardWriter:
    """Pushes transition batches round-robin, one batch per shard in turn, over every shard the
    discovery knows now. A shard that fails, or (prioritized replay) holds inserts back while
    another does not, is skipped for that batch (the batch goes to the next one, so nothing is
    lost while any shard is up)."""

    def __init__(self, experiment_id: str, config: ExperimentConfig, shards: Discovery, obs_size: int):
        self.experiment_id = experiment_id
        self.config_msg = to_proto(config)
        self.prioritized = config.buffer.prioritized
        self.obs_size = obs_size
        self.shards = shards
        self._opened: set[str] = set()
        self._refused: dict[str, str] = {}  # address -> why it would not open our table (said once)
        self._turn = 0

    def _open(self, address: str) -> None:
        if address in self._opened:
            return
        try:
            stub(buffer_grpc.BufferServiceStub, address).OpenReplay(
                buffer_pb.OpenReplayRequest(experiment_id=self.experiment_id, config=self.config_msg,
                                            obs_size=self.obs_size), timeout=10.0)
        except grpc.RpcError as err:
            # A shard over its caps says so in RESOURCE_EXHAUSTED, as a hold-back does: tell it apart.
            if err.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT) \
                    and self._refused.get(address) != err.details():
                self._refused[address] = err.details()
                log.error("%s: shard %s will not open the replay: %s", self.experiment_id, address, err.details())
            raise
        self._refused.pop(address, None)
        self._opened.add(address)

    def push(self, batch: Transitions, stopping: threading.Event) -> bool:
        """Delivers one batch; retries until a shard takes it or `stopping` is set.

        With prioritized replay a shard holding inserts back is passed over at once while
        another shard may take the batch, and the writer waits on one only when every shard
        holds (the limit's back-pressure): the learner draws by priority mass, and a shard the
        split gave no rows in the last round keeps the older totals it was sent, so it can
        hold while the experiment is not ahead. Uniform replay keeps strict turns, which keep
        the shards evenly filled (passing over let them drift to 12 867 / 6 953 / 12 605 rows
        under the old limit)."""
        packed = pack_transitions(batch)
        passing, waiting = (buffer_pb.PushTransitionsRequest(experiment_id=self.experiment_id, batch=packed,
                                                             refuse_if_held=refuse) for refuse in (True, False))
        while not stopping.is_set():
            addresses = self.shards.addresses()
            if not addresses:
                stopping.wait(0.5)
                continue
            for request in (passing, waiting) if self.prioritized and len(addresses) > 1 else (waiting,):
                for _ in range(len(addresses)):
                    address = addresses[self._turn % len(addresses)]
                    self._turn += 1
                    delivered = self._push_to(address, request, stopping)
                    if delivered is None:  # stopping
                        return False
                    if delivered:
                        return True
            stopping.wait(0.2)  # every shard refused: back off, keep the batch
        return False

    def _push_to(self, address: str, request: buffer_pb.PushTransitionsRequest,
                 stopping: threading.Event) -> bool | None:
        """True once the shard took the batch, False if it refused or failed, None if stopping."""
        try:
            self._open(address)
            call = stub(buffer_grpc.BufferServiceStub, address).PushTransitions.future(
                request, timeout=PUSH_TIMEOUT_SECONDS)
            if not _wait_unless_stopping(call, stopping):
                return None
            call.result()
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                self._opened.discard(address)  # the shard restarted without our table
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                log.warning("%s: push to %s failed: %s", self.experiment_id, address, err.code().name)
            return False
        return True


class Rollout:
    """An experiment's actor on this replica."""

    def __init__(self, experiment_id: str, config: ExperimentConfig, actor_index: int, shards: Discovery,
                 policy_address: str, metrics: MetricsReporter | None):
        self.experiment_id = experiment_id
        self.config = config
        self.actor = Actor(config, actor_index)
        self.writer = ShardWriter(experiment_id, config, shards, self.actor.shape.obs_size)
        self.policy_address = policy_address
        self.metrics = metrics
        self.stopping = threading.Event()
        self.rejected_version = -1  # the newest policy version that could not be loaded (not asked for again)
        self._queue: queue.Queue[Transitions] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [threading.Thread(target=self._act, name=f"act-{self.experiment_id}", daemon=True),
                         threading.Thread(target=self._send, name=f"send-{self.experiment_id}", daemon=True)]
        for thread in self._threads:
            thread.start()
        log.info("%s: rollout started (%d envs of %s)", self.experiment_id,
                 self.config.environment.envs_per_replica, self.config.env_id)

    def _refresh_policy(self) -> None:
        try:
            reply = stub(policy_grpc.PolicyServiceStub, self.policy_address).GetPolicy(
                policy_pb.GetPolicyRequest(experiment_id=self.experiment_id,
                                           newer_than_version=max(self.actor.policy_version, self.rejected_version)),
                timeout=5.0)
        except grpc.RpcError as err:
            log.warning("%s: policy refresh failed: %s", self.experiment_id, err.code().name)
            return
        if not reply.updated:
            return
        try:
            self.actor.load_policy(unpack_weights(reply.weights), reply.weights.version)
        except ValueError as err:  # weights for another network: keep acting on the ones we have
            self.rejected_version = reply.weights.version
            log.error("%s: policy version %d cannot be loaded, acting on version %d: %s", self.experiment_id,
                      reply.weights.version, self.actor.policy_version, err)
            if self.metrics is not None:
                self.metrics.record(self.experiment_id, "actor/rejected_policy_version", reply.weights.version,
                                    self.actor.env_steps)

    def _act(self) -> None:
        env_cfg = self.config.environment
        pending: list[Transitions] = []
        pending_rows = 0
        vector_steps = 0
        try:
            while not self.stopping.is_set():
                if vector_steps % env_cfg.policy_refresh_steps == 0:
                    self._refresh_policy()
                result = self.actor.step()
                vector_steps += 1
                pending.append(result.transitions)
                pending_rows += result.transitions.rows
                if pending_rows >= env_cfg.push_batch_size:
                    self._enqueue(Transitions.concatenate(pending))
                    pending, pending_rows = [], 0
                if self.metrics is not None:
                    for ret, length in zip(result.episode_returns, result.episode_lengths):
                        self.metrics.record(self.experiment_id, "charts/episodic_return", ret, self.actor.env_steps)
                        self.metrics.record(self.experiment_id, "charts/episodic_length", length,
                                            self.actor.env_steps)
                if env_cfg.step_delay_seconds:
                    time.sleep(env_cfg.step_delay_seconds)
        except Exception:  # a crashed actor must say why, not vanish
            log.exception("%s: rollout failed", self.experiment_id)
            self.stopping.set()

    def _enqueue(self, batch: Transitions) -> None:
        # Bounded: when shards hold pushes back (learner behind, or gone) the actor stops here.
        while not self.stopping.is_set():
            try:
                self._queue.put(batch, timeout=0.5)
                return
            except queue.Full:
                continue

    def _send(self) -> None:
        while not (self.stopping.is_set() and self._queue.empty()):
            try:
                batch = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if not self.writer.push(batch, self.stopping):
                return

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=PUSH_TIMEOUT_SECONDS + 5)
        self.actor.close()
        log.info("%s: rollout stopped after %d env steps, %d episodes", self.experiment_id,
                 self.actor.env_steps, self.actor.episodes)


class EnvironmentMetrics:
    """The replica's rollouts as Prometheus families."""

    def __init__(self, replica: EnvironmentReplica):
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        rollouts = self.replica.rollouts.items()
        yield counter("kuberl_environment_steps", "Environment steps taken by this replica's actors",
                      ((e, r.actor.env_steps) for e, r in rollouts))
        yield counter("kuberl_environment_episodes", "Episodes this replica's actors finished",
                      ((e, r.actor.episodes) for e, r in rollouts))
        yield gauge("kuberl_environment_episode_return", f"Mean training return of the last {RECENT_EPISODES} "
                    "episodes (exploring)", ((e, r.actor.mean_recent_return) for e, r in rollouts))
        yield gauge("kuberl_environment_exploration_epsilon", "Probability of a random action",
                    ((e, r.actor.epsilon) for e, r in rollouts))
        yield gauge("kuberl_environment_policy_version", "Policy version the actors act on (-1: initial weights)",
                    ((e, r.actor.policy_version) for e, r in rollouts))
        yield gauge("kuberl_environment_push_queue_batches", "Batches waiting to be pushed to the shards",
                    ((e, r.queue_depth) for e, r in rollouts))


class EnvironmentServicer(pb_grpc.EnvironmentServiceServicer):
    def __init__(self, replica: EnvironmentReplica):
        self.replica = replica

    @rpc_errors
    def Initialize(self, request: pb.InitializeRequest, context: grpc.ServicerContext) -> pb.InitializeResponse:
        if request.actor_index < 0:
            raise ValueError(f"actor_index: must be >= 0, got {request.actor_index}")
        rollout = self.replica.initialize(require_experiment_id(request.experiment_id), from_proto(request.config),
                                       request.actor_index)
        shape = rollout.actor.shape
        return pb.InitializeResponse(observation_size=shape.obs_size, num_actions=shape.num_actions)

    @rpc_errors
    def StartRollout(self, request: pb.StartRolloutRequest, context: grpc.ServicerContext
                     ) -> pb.StartRolloutResponse:
        self.replica.rollouts.get(require_experiment_id(request.experiment_id)).start()
        return pb.StartRolloutResponse()

    @rpc_errors
    def StopRollout(self, request: pb.StopRolloutRequest, context: grpc.ServicerContext) -> pb.StopRolloutResponse:
        rollout = self.replica.rollouts.pop(require_experiment_id(request.experiment_id))
        rollout.stop()
        return pb.StopRolloutResponse(env_steps=rollout.actor.env_steps, episodes=rollout.actor.episodes)


class EnvironmentReplica:
    """The rollouts on this replica, one per experiment."""

    def __init__(self, buffer_target: str, policy_address: str, metrics: MetricsReporter | None):
        self.buffer_target = buffer_target
        self.policy_address = policy_address
        self.metrics = metrics
        self.rollouts: Registry[Rollout] = Registry("is not initialised on this replica")

    def initialize(self, experiment_id: str, config: ExperimentConfig, actor_index: int) -> Rollout:
        return self.rollouts.get_or_create(experiment_id, lambda: Rollout(
            experiment_id, config, actor_index, Discovery(self.buffer_target), self.policy_address, self.metrics))

    def follow(self, manifest: Manifest, actor_index: int) -> None:
        """Serves an experiment file's version (cluster mode): rolls it out once. A changed
        config restarts the actors' pods instead (the pod template's config hash)."""
        if self.rollouts.find(manifest.experiment_id) is None:
            self.initialize(manifest.experiment_id, manifest.config, actor_index).start()

    def stop(self) -> None:
        for rollout in self.rollouts.clear():
            rollout.stop()
        if self.metrics is not None:
            self.metrics.close()


def create_server(port: int, buffer_target: str, policy_address: str, metrics: MetricsReporter | None,
                  host: str = "127.0.0.1") -> tuple[Server, EnvironmentReplica]:
    replica = EnvironmentReplica(buffer_target, policy_address, metrics)
    server = Server(EnvironmentServicer(replica), pb_grpc.add_EnvironmentServiceServicer_to_server, pb.DESCRIPTOR,
                    port, host)
    return server, replica
