"""gRPC front of the experiment role. Pool mode (`LocalExperiments`): experiments share the
environment replicas it finds, each spread round-robin over them, and the role drives the
replicas and the learner itself; their status comes from the same lifecycle function as a
cluster's (kuberl.lifecycle). Cluster mode (`ClusterExperiments`) keeps RLExperiment objects."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client.core import GaugeMetricFamily

from kuberl.config import ExperimentConfig, from_proto, to_proto
from kuberl.discovery import Discovery
from kuberl.envs import describe
from kuberl.experiment.core import ReplicaAssigner
from kuberl.lifecycle import (Intent, LearnerView, Observation, Phase, compute_status, recorded_phase,
                              transitions)
from kuberl.observe import ask_learner, episode_returns
from kuberl.prometheus import Metric, gauge
from kuberl.registry import Registry
from kuberl.release import release_everywhere
from kuberl.rpc import AlreadyExists, Exhausted, Server, Unavailable, require_experiment_id, rpc_errors, stub
from kuberl.v1 import environment_service_pb2 as env_pb
from kuberl.v1 import environment_service_pb2_grpc as env_grpc
from kuberl.v1 import experiment_service_pb2 as pb
from kuberl.v1 import experiment_service_pb2_grpc as pb_grpc
from kuberl.v1 import learner_service_pb2 as learner_pb
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc

if TYPE_CHECKING:
    from kuberl.experiment.kubernetes import ClusterExperiments

log = logging.getLogger(__name__)

RPC_TIMEOUT = 30.0
OBSERVE_TIMEOUT = 5.0


def phase_to_proto(phase: Phase) -> int:
    """The wire's ExperimentPhase for a lifecycle phase: the same names, prefixed."""
    return pb.ExperimentPhase.Value(f"EXPERIMENT_PHASE_{phase.name}")


def phase_name(value: int) -> str:
    """The lifecycle phase's value (Phase.RUNNING.value) for the wire's ExperimentPhase."""
    name = pb.ExperimentPhase.Name(value).removeprefix("EXPERIMENT_PHASE_")
    return Phase[name].value if name in Phase.__members__ else name.capitalize()


def status_fields(status: pb.ExperimentStatus) -> dict[str, Any]:
    """An ExperimentStatus as plain values under its JSON names: numbers as numbers (proto JSON
    would quote 64-bit ones), not-yet-known figures as null, the phase as the CR spells it."""
    fields: dict[str, Any] = {}
    for descriptor in status.DESCRIPTOR.fields:
        value = getattr(status, descriptor.name)
        if descriptor.name == "phase":
            value = phase_name(value)
        elif isinstance(value, float) and math.isnan(value):
            value = None
        elif not isinstance(value, (str, int, float)):
            value = list(value)
        fields[descriptor.json_name] = value
    return fields


def status_to_proto(experiment_id: str, env_id: str, status: dict[str, Any], elapsed_seconds: float,
                    environment_replicas: list[str], buffer_size: int = 0) -> pb.ExperimentStatus:
    """A lifecycle status (the RLExperiment status vocabulary) as the API's ExperimentStatus."""
    nan = float("nan")
    result = status.get("result", {})
    return pb.ExperimentStatus(
        experiment_id=experiment_id, phase=phase_to_proto(recorded_phase(status)), message=status.get("message", ""),
        env_id=env_id, env_steps=int(status.get("envSteps", 0)), episodes=int(status.get("episodes", 0)),
        mean_return=float(status.get("meanReturn", nan)), eval_return=float(status.get("evalReturn", nan)),
        policy_version=int(status.get("policyVersion", 0)), updates=int(status.get("updates", 0)),
        elapsed_seconds=elapsed_seconds, environment_replicas=environment_replicas, buffer_size=buffer_size,
        result_version=int(result.get("policyVersion", -1)), result_return=float(result.get("meanReturn", nan)),
        result_episodes=int(result.get("episodes", 0)))


@dataclass
class Record:
    experiment_id: str
    intent: Intent
    replicas: list[str]  # the environment replicas that own the experiment
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    status: dict[str, Any] = field(default_factory=dict)  # as the lifecycle last computed it
    learner: LearnerView | None = None
    released: bool = False  # rollouts and training stopped: the pool's "scaled to zero"
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def phase(self) -> Phase:
        return recorded_phase(self.status)


@dataclass(frozen=True)
class Peers:
    """Where the roles an experiment role drives are: host:port lists or DNS names."""

    environment: str
    buffer: str
    learner: str
    policy: str
    analytics: str


class LocalExperiments:
    """Pool mode: drives environment replicas and the learner directly, as the seed's
    experiment role does."""

    def __init__(self, peers: Peers, poll_seconds: float = 0.25):
        self.peers = peers
        self.environments = Discovery(peers.environment)
        self.shards = Discovery(peers.buffer)
        self.poll_seconds = poll_seconds
        self.assigner = ReplicaAssigner()
        self._records: Registry[Record] = Registry("does not exist")
        self._admission = threading.Lock()
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="experiment-monitor", daemon=True)
        self._monitor.start()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, experiment_id: str, config: ExperimentConfig) -> Record:
        describe(config.env_id, config.env_kwargs)  # refuse an unknown or continuous-action env before touching replicas
        experiment_id = experiment_id or f"exp-{uuid.uuid4().hex[:8]}"
        if len(experiment_id) > 128:
            raise ValueError("experiment_id: at most 128 characters")
        with self._admission:  # one start at a time decides whether an id is free
            existing = self._records.find(experiment_id)
            if existing is not None:
                # An ended experiment keeps its results under its id until it is deleted.
                raise AlreadyExists(f"experiment_id: {experiment_id!r} is already running"
                                    if not existing.phase.finished
                                    else f"experiment_id: {experiment_id!r} has ended ({existing.phase.value}) and "
                                         "keeps its results; DeleteExperiment (kuberl delete) frees the id")
            try:
                replicas = self.assigner.assign(self.environments.addresses(), config.environment.replicas)
            except LookupError as err:
                raise Exhausted(str(err)) from None
            record = Record(experiment_id, Intent(config), replicas)
            # Held until the roles have it: a Stop or Delete that arrives meanwhile waits, then ends
            # it, instead of racing the StartRollouts still on their way.
            record.lock.acquire()
            self._records.put(experiment_id, record)
        try:
            # A deleted experiment under this id left its result and metrics (kept for the
            # retention): a new experiment inherits neither.
            unreachable = release_everywhere(experiment_id, RPC_TIMEOUT, policy=self.peers.policy,
                                             analytics=self.peers.analytics, purge=True)
            if unreachable:
                raise Unavailable(f"experiment {experiment_id!r} not started: {'; '.join(unreachable)}")
            config_msg = to_proto(config)
            for index, address in enumerate(replicas):
                stub(env_grpc.EnvironmentServiceStub, address).Initialize(
                    env_pb.InitializeRequest(experiment_id=experiment_id, config=config_msg, actor_index=index),
                    timeout=RPC_TIMEOUT)
            stub(learner_grpc.LearnerServiceStub, self.peers.learner).StartTraining(
                learner_pb.StartTrainingRequest(experiment_id=experiment_id, config=config_msg), timeout=RPC_TIMEOUT)
            for address in replicas:
                stub(env_grpc.EnvironmentServiceStub, address).StartRollout(
                    env_pb.StartRolloutRequest(experiment_id=experiment_id), timeout=RPC_TIMEOUT)
        except (grpc.RpcError, Unavailable):
            # As a refused create in a cluster: the caller gets the error and no experiment exists.
            self._release(record)
            self._records.pop(experiment_id)
            raise
        finally:
            record.lock.release()
        self._observe(record)
        log.info("%s: started %s on %s", experiment_id, config.env_id, ", ".join(replicas))
        return record

    def stop(self, experiment_id: str) -> Record:
        """The user's end of the experiment: Stopped (unless it has already ended), results kept."""
        record = self.get(experiment_id)
        record.intent = Intent(record.intent.config, stop=True)
        self._observe(record)
        return record

    def delete(self, experiment_id: str) -> None:
        """Stops the experiment if it runs, then has every role release what it holds for it; the
        id is free again. The record stays while any role could not be reached (retry)."""
        record = self.get(experiment_id)
        if not record.phase.finished:
            self.stop(experiment_id)
        unreachable = release_everywhere(experiment_id, RPC_TIMEOUT, learner=self.peers.learner,
                                         shards=self.shards.addresses(), policy=self.peers.policy,
                                         analytics=self.peers.analytics)
        if unreachable:
            raise Unavailable(f"experiment {experiment_id!r} is not deleted yet ({'; '.join(unreachable)}); "
                              "retry when they are back")
        self._records.pop(experiment_id)
        log.info("%s: deleted", experiment_id)

    def get(self, experiment_id: str) -> Record:
        return self._records.get(experiment_id)

    def records(self) -> list[Record]:
        return self._records.values()

    # --- observation -------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for record in self.records():
                if not record.released:
                    self._observe(record)

    def _observation(self, record: Record, learner: LearnerView | None) -> Observation:
        episodes, mean_return = episode_returns(self.peers.analytics, record.experiment_id, OBSERVE_TIMEOUT)
        ready = {"environment": len(record.replicas), "buffer": learner.shards if learner else 0,
                 "learner": 1 if learner else 0}
        return Observation(generation=1, now=datetime.now(timezone.utc), ready=ready, learner=learner,
                           episodes=episodes, mean_return=mean_return)

    def _observe(self, record: Record) -> None:
        """Status from the lifecycle; a phase that ended releases the experiment's actors and learner."""
        with record.lock:
            if record.released:
                return
            try:
                learner = ask_learner(self.peers.learner, record.experiment_id, OBSERVE_TIMEOUT)
            except grpc.RpcError as err:
                learner = None
                if err.code() == grpc.StatusCode.NOT_FOUND and not record.intent.stop:
                    self._restart_training(record)
            record.learner = learner or record.learner
            record.status, previous = compute_status(record.intent, record.status,
                                                     self._observation(record, learner)), record.status
            for told in transitions(previous, record.status):
                log.log(logging.WARNING if told.type == "Warning" else logging.INFO, "%s: %s: %s",
                        record.experiment_id, told.reason, told.message)
            if record.phase.finished:
                self._release(record)

    def _release(self, record: Record) -> None:
        # The owners, not whichever replica a fresh round-robin would pick.
        for address in record.replicas:
            try:
                stub(env_grpc.EnvironmentServiceStub, address).StopRollout(
                    env_pb.StopRolloutRequest(experiment_id=record.experiment_id), timeout=RPC_TIMEOUT)
            except grpc.RpcError as err:
                log.warning("%s: StopRollout on %s: %s", record.experiment_id, address, err.code().name)
        try:
            stub(learner_grpc.LearnerServiceStub, self.peers.learner).StopTraining(
                learner_pb.StopTrainingRequest(experiment_id=record.experiment_id), timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            log.warning("%s: StopTraining: %s", record.experiment_id, err.code().name)
        record.released, record.finished = True, time.monotonic()

    def _restart_training(self, record: Record) -> None:
        """A learner that restarted has forgotten the experiment: start it again. It resumes from
        the policy role's newest weights, and the shards still hold the replay."""
        try:
            stub(learner_grpc.LearnerServiceStub, self.peers.learner).StartTraining(
                learner_pb.StartTrainingRequest(experiment_id=record.experiment_id,
                                                config=to_proto(record.intent.config)), timeout=RPC_TIMEOUT)
            log.info("%s: the learner had restarted; training started again", record.experiment_id)
        except grpc.RpcError as err:
            log.warning("%s: restarting training failed: %s", record.experiment_id, err.code().name)

    # --- the API ------------------------------------------------------------------------------

    def status(self, record: Record) -> pb.ExperimentStatus:
        end = record.finished if record.finished is not None else time.monotonic()
        return status_to_proto(record.experiment_id, record.intent.config.env_id, record.status, end - record.started,
                               record.replicas, record.learner.buffer_size if record.learner else 0)

    def start_experiment(self, experiment_id: str, config: ExperimentConfig) -> tuple[str, list[str]]:
        record = self.start(experiment_id, config)
        return record.experiment_id, record.replicas

    def stop_experiment(self, experiment_id: str) -> pb.ExperimentStatus:
        return self.status(self.stop(experiment_id))

    def experiment_status(self, experiment_id: str) -> pb.ExperimentStatus:
        return self.status(self.get(experiment_id))

    def list_statuses(self) -> list[pb.ExperimentStatus]:
        return [self.status(r) for r in self.records()]

    def delete_experiment(self, experiment_id: str) -> None:
        self.delete(experiment_id)

    def close(self) -> None:
        self._stop.set()
        self._monitor.join()
        for record in self.records():
            if not record.phase.finished:
                self.stop(record.experiment_id)


class ExperimentMetrics:
    """Every experiment this role knows, as Prometheus families: its phase the way
    kube-state-metrics exports one (a 1 for the phase it is in), and its headline figures."""

    def __init__(self, experiments: LocalExperiments | ClusterExperiments):
        self.experiments = experiments

    def collect(self) -> Iterator[Metric]:
        try:
            statuses = self.experiments.list_statuses()
        except (Unavailable, grpc.RpcError) as err:  # a scrape reports what it can, the role goes on
            log.warning("metrics: experiments not listed: %s", err)
            statuses = []
        phases = GaugeMetricFamily("kuberl_experiment_phase", "1 for the phase each experiment is in",
                                   labels=["experiment", "phase"])
        for s in statuses:
            phases.add_metric([s.experiment_id, phase_name(s.phase)], 1)
        yield phases
        yield gauge("kuberl_experiment_env_steps", "Environment steps taken", ((s.experiment_id, s.env_steps)
                                                                              for s in statuses))
        yield gauge("kuberl_experiment_environment_replicas", "Environment replicas serving the experiment",
                    ((s.experiment_id, len(s.environment_replicas)) for s in statuses))
        yield gauge("kuberl_experiment_result_return", "Return of the experiment's result",
                    ((s.experiment_id, s.result_return) for s in statuses))


class ExperimentServicer(pb_grpc.ExperimentServiceServicer):
    """Translates RPCs for either backend: LocalExperiments (drives the roles itself) or
    ClusterExperiments (creates and reads RLExperiment objects for the operator)."""

    def __init__(self, experiments: LocalExperiments | ClusterExperiments):
        self.experiments = experiments

    @rpc_errors
    def StartExperiment(self, request: pb.StartExperimentRequest, context: grpc.ServicerContext
                        ) -> pb.StartExperimentResponse:
        experiment_id, replicas = self.experiments.start_experiment(request.experiment_id, from_proto(request.config))
        return pb.StartExperimentResponse(experiment_id=experiment_id, environment_replicas=replicas)

    @rpc_errors
    def StopExperiment(self, request: pb.StopExperimentRequest, context: grpc.ServicerContext
                       ) -> pb.StopExperimentResponse:
        return pb.StopExperimentResponse(status=self.experiments.stop_experiment(request.experiment_id))

    @rpc_errors
    def GetExperimentStatus(self, request: pb.GetExperimentStatusRequest, context: grpc.ServicerContext
                            ) -> pb.GetExperimentStatusResponse:
        return pb.GetExperimentStatusResponse(status=self.experiments.experiment_status(request.experiment_id))

    @rpc_errors
    def DeleteExperiment(self, request: pb.DeleteExperimentRequest, context: grpc.ServicerContext
                         ) -> pb.DeleteExperimentResponse:
        self.experiments.delete_experiment(require_experiment_id(request.experiment_id))
        return pb.DeleteExperimentResponse()

    @rpc_errors
    def ListExperiments(self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext
                        ) -> pb.ListExperimentsResponse:
        return pb.ListExperimentsResponse(experiments=self.experiments.list_statuses())


def create_server(port: int, peers: Peers, host: str = "127.0.0.1", kubernetes_namespace: str | None = None
                  ) -> tuple[Server, LocalExperiments | ClusterExperiments]:
    if kubernetes_namespace is not None:
        from kuberl.experiment.kubernetes import ClusterExperiments

        experiments: LocalExperiments | ClusterExperiments = ClusterExperiments(kubernetes_namespace)
    else:
        experiments = LocalExperiments(peers)
    server = Server(ExperimentServicer(experiments), pb_grpc.add_ExperimentServiceServicer_to_server, pb.DESCRIPTOR,
                    port, host)
    return server, experiments
