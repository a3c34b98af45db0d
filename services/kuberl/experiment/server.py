"""gRPC front of the experiment role: starts experiments on environment replicas (round-robin),
starts the learner, watches the stop rule, and answers status from the learner and analytics."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from kuberl.config import ExperimentConfig, from_proto, to_proto
from kuberl.discovery import Discovery
from kuberl.envs import describe
from kuberl.experiment.core import ReplicaAssigner
from kuberl.registry import Registry
from kuberl.rpc import AlreadyExists, Exhausted, Server, rpc_errors, stub
from kuberl.v1 import analytics_service_pb2 as analytics_pb
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc
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
MEAN_RETURN_WINDOW = 100
FINISHED = (pb.EXPERIMENT_PHASE_SUCCEEDED, pb.EXPERIMENT_PHASE_FAILED, pb.EXPERIMENT_PHASE_STOPPED)


@dataclass
class Record:
    experiment_id: str
    config: ExperimentConfig
    replicas: list[str]
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    phase: int = pb.EXPERIMENT_PHASE_PENDING
    message: str = ""
    learner: learner_pb.LearnerStats = field(default_factory=learner_pb.LearnerStats)


class LocalExperiments:
    """Local mode: drives environment replicas and the learner directly, as the seed's N1 does."""

    def __init__(self, environment_target: str, learner_address: str, analytics_address: str,
                 poll_seconds: float = 0.25):
        self.environments = Discovery(environment_target)
        self.learner_address = learner_address
        self.analytics_address = analytics_address
        self.poll_seconds = poll_seconds
        self.assigner = ReplicaAssigner()
        self._records: Registry[Record] = Registry("does not exist")
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="experiment-monitor", daemon=True)
        self._monitor.start()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, experiment_id: str, config: ExperimentConfig) -> Record:
        describe(config.env_id)  # refuse an unknown or continuous-action env before touching replicas
        experiment_id = experiment_id or f"exp-{uuid.uuid4().hex[:8]}"
        if len(experiment_id) > 128:
            raise ValueError("experiment_id: at most 128 characters")
        existing = self._records.find(experiment_id)
        if existing is not None and existing.phase not in FINISHED:
            raise AlreadyExists(f"experiment_id: {experiment_id!r} is already running")
        try:
            replicas = self.assigner.assign(self.environments.addresses(), config.environment.replicas)
        except LookupError as err:
            raise Exhausted(str(err)) from None
        record = Record(experiment_id, config, replicas)
        self._records.put(experiment_id, record)
        config_msg = to_proto(config)
        try:
            for index, address in enumerate(replicas):
                stub(env_grpc.EnvironmentServiceStub, address).Initialize(
                    env_pb.InitializeRequest(experiment_id=experiment_id, config=config_msg, actor_index=index),
                    timeout=RPC_TIMEOUT)
            stub(learner_grpc.LearnerServiceStub, self.learner_address).StartTraining(
                learner_pb.StartTrainingRequest(experiment_id=experiment_id, config=config_msg), timeout=RPC_TIMEOUT)
            for address in replicas:
                stub(env_grpc.EnvironmentServiceStub, address).StartRollout(
                    env_pb.StartRolloutRequest(experiment_id=experiment_id), timeout=RPC_TIMEOUT)
        except grpc.RpcError as err:
            record.phase, record.finished = pb.EXPERIMENT_PHASE_FAILED, time.monotonic()
            record.message = f"start failed: {err.code().name}: {err.details()}"
            raise
        record.phase = pb.EXPERIMENT_PHASE_RUNNING
        log.info("%s: started %s on %s", experiment_id, config.env_id, ", ".join(replicas))
        return record

    def stop(self, experiment_id: str, phase: int = pb.EXPERIMENT_PHASE_STOPPED, message: str = "stopped on request"
             ) -> Record:
        record = self.get(experiment_id)
        if record.phase in FINISHED:
            return record
        # The owners, not whichever replica a fresh round-robin would pick.
        for address in record.replicas:
            try:
                stub(env_grpc.EnvironmentServiceStub, address).StopRollout(
                    env_pb.StopRolloutRequest(experiment_id=experiment_id), timeout=RPC_TIMEOUT)
            except grpc.RpcError as err:
                log.warning("%s: StopRollout on %s: %s", experiment_id, address, err.code().name)
        try:
            record.learner = stub(learner_grpc.LearnerServiceStub, self.learner_address).StopTraining(
                learner_pb.StopTrainingRequest(experiment_id=experiment_id), timeout=RPC_TIMEOUT).stats
        except grpc.RpcError as err:
            log.warning("%s: StopTraining: %s", experiment_id, err.code().name)
        record.phase, record.message, record.finished = phase, message, time.monotonic()
        log.info("%s: %s (%s)", experiment_id, pb.ExperimentPhase.Name(phase), message)
        return record

    def get(self, experiment_id: str) -> Record:
        return self._records.get(experiment_id)

    def records(self) -> list[Record]:
        return self._records.values()

    # --- the stop rule -----------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for record in self.records():
                if record.phase == pb.EXPERIMENT_PHASE_RUNNING:
                    self._observe(record)

    def _observe(self, record: Record) -> None:
        learner = stub(learner_grpc.LearnerServiceStub, self.learner_address)
        try:
            record.learner = learner.GetLearnerStats(
                learner_pb.GetLearnerStatsRequest(experiment_id=record.experiment_id), timeout=5.0).stats
        except grpc.RpcError as err:
            record.message = f"learner unreachable: {err.code().name}"
            if err.code() == grpc.StatusCode.NOT_FOUND:
                self._restart_training(record)
            return
        record.message = ""
        state = record.learner.state
        if state == learner_pb.TRAINING_STATE_SOLVED:
            self.stop(record.experiment_id, pb.EXPERIMENT_PHASE_SUCCEEDED, record.learner.message)
        elif state == learner_pb.TRAINING_STATE_BUDGET_EXHAUSTED:
            # Without a target return, spending the budget is the whole job.
            solved_by_budget = record.config.stop.target_return is None and describe(
                record.config.env_id).reward_threshold is None
            phase = pb.EXPERIMENT_PHASE_SUCCEEDED if solved_by_budget else pb.EXPERIMENT_PHASE_FAILED
            self.stop(record.experiment_id, phase, record.learner.message)
        elif state == learner_pb.TRAINING_STATE_FAILED:
            self.stop(record.experiment_id, pb.EXPERIMENT_PHASE_FAILED, record.learner.message)

    def _restart_training(self, record: Record) -> None:
        """A learner that restarted has forgotten the experiment: start it again. It resumes from
        the policy role's newest weights, and the shards still hold the replay."""
        try:
            stub(learner_grpc.LearnerServiceStub, self.learner_address).StartTraining(
                learner_pb.StartTrainingRequest(experiment_id=record.experiment_id, config=to_proto(record.config)),
                timeout=RPC_TIMEOUT)
            log.info("%s: the learner had restarted; training started again", record.experiment_id)
        except grpc.RpcError as err:
            log.warning("%s: restarting training failed: %s", record.experiment_id, err.code().name)

    # --- status ------------------------------------------------------------------------------

    def status(self, record: Record) -> pb.ExperimentStatus:
        episodes, mean_return = 0, math.nan
        try:
            reply = stub(analytics_grpc.AnalyticsServiceStub, self.analytics_address).QueryMetrics(
                analytics_pb.QueryMetricsRequest(experiment_id=record.experiment_id, metric="charts/episodic_return",
                                                 limit=MEAN_RETURN_WINDOW, newest_first=True), timeout=5.0)
            episodes = reply.total
            if reply.points:
                mean_return = sum(p.value for p in reply.points) / len(reply.points)
        except grpc.RpcError as err:
            log.warning("%s: analytics unreachable: %s", record.experiment_id, err.code().name)
        end = record.finished if record.finished is not None else time.monotonic()
        learner = record.learner
        return pb.ExperimentStatus(
            experiment_id=record.experiment_id, phase=record.phase, message=record.message or learner.message,
            env_id=record.config.env_id, env_steps=learner.env_steps, episodes=episodes, mean_return=mean_return,
            eval_return=learner.eval_return if learner.updates else math.nan, policy_version=learner.policy_version,
            updates=learner.updates, elapsed_seconds=end - record.started, environment_replicas=record.replicas,
            buffer_size=learner.buffer_size)

    # --- the API ------------------------------------------------------------------------------

    def start_experiment(self, experiment_id: str, config: ExperimentConfig) -> tuple[str, list[str]]:
        record = self.start(experiment_id, config)
        return record.experiment_id, record.replicas

    def stop_experiment(self, experiment_id: str) -> pb.ExperimentStatus:
        return self.status(self.stop(experiment_id))

    def experiment_status(self, experiment_id: str) -> pb.ExperimentStatus:
        return self.status(self.get(experiment_id))

    def list_statuses(self) -> list[pb.ExperimentStatus]:
        return [self.status(r) for r in self.records()]

    def close(self) -> None:
        self._stop.set()
        self._monitor.join()
        for record in self.records():
            if record.phase not in FINISHED:
                self.stop(record.experiment_id, message="experiment service shut down")


class ExperimentServicer(pb_grpc.ExperimentServiceServicer):
    """Translates RPCs for either backend: LocalExperiments (drives the roles itself) or
    ClusterExperiments (creates and reads RLExperiment objects for the operator)."""

    def __init__(self, role: LocalExperiments | ClusterExperiments):
        self.role = role

    @rpc_errors
    def StartExperiment(self, request: pb.StartExperimentRequest, context: grpc.ServicerContext
                        ) -> pb.StartExperimentResponse:
        experiment_id, replicas = self.role.start_experiment(request.experiment_id, from_proto(request.config))
        return pb.StartExperimentResponse(experiment_id=experiment_id, environment_replicas=replicas)

    @rpc_errors
    def StopExperiment(self, request: pb.StopExperimentRequest, context: grpc.ServicerContext
                       ) -> pb.StopExperimentResponse:
        return pb.StopExperimentResponse(status=self.role.stop_experiment(request.experiment_id))

    @rpc_errors
    def GetExperimentStatus(self, request: pb.GetExperimentStatusRequest, context: grpc.ServicerContext
                            ) -> pb.GetExperimentStatusResponse:
        return pb.GetExperimentStatusResponse(status=self.role.experiment_status(request.experiment_id))

    @rpc_errors
    def ListExperiments(self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext
                        ) -> pb.ListExperimentsResponse:
        return pb.ListExperimentsResponse(experiments=self.role.list_statuses())


def create_server(port: int, environment_target: str, learner_address: str, analytics_address: str,
                  host: str = "[::]", kubernetes_namespace: str | None = None
                  ) -> tuple[Server, LocalExperiments | ClusterExperiments]:
    if kubernetes_namespace is not None:
        from kuberl.experiment.kubernetes import ClusterExperiments

        role: LocalExperiments | ClusterExperiments = ClusterExperiments(kubernetes_namespace)
    else:
        role = LocalExperiments(environment_target, learner_address, analytics_address)
    server = Server(ExperimentServicer(role), pb_grpc.add_ExperimentServiceServicer_to_server, pb.DESCRIPTOR,
                    port, host)
    return server, role
