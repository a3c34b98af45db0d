"""gRPC front of the learner: one TrainingRun (kuberl.learner.training) per experiment."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from kuberl.config import ExperimentConfig, Manifest, from_proto
from kuberl.learner.training import TrainingRun
from kuberl.metrics import MetricsReporter
from kuberl.prometheus import Metric, counter, gauge
from kuberl.registry import Registry
from kuberl.rpc import Server, require_experiment_id, rpc_errors
from kuberl.v1 import common_pb2
from kuberl.v1 import learner_service_pb2 as pb
from kuberl.v1 import learner_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


# A request thread trains for a few seconds at most; longer training is StartTraining's.
MAX_TRAIN_STEP_UPDATES = 10_000


class LearnerServicer(pb_grpc.LearnerServiceServicer):
    def __init__(self, replica: LearnerReplica):
        self.replica = replica

    @rpc_errors
    def StartTraining(self, request: pb.StartTrainingRequest, context: grpc.ServicerContext
                      ) -> pb.StartTrainingResponse:
        run = self.replica.run(require_experiment_id(request.experiment_id), from_proto(request.config))
        run.start()
        return pb.StartTrainingResponse()

    @rpc_errors
    def StopTraining(self, request: pb.StopTrainingRequest, context: grpc.ServicerContext
                     ) -> pb.StopTrainingResponse:
        run = self.replica.runs.get(require_experiment_id(request.experiment_id))
        run.stop()
        return pb.StopTrainingResponse(stats=run.stats())

    @rpc_errors
    def TrainStep(self, request: pb.TrainStepRequest, context: grpc.ServicerContext) -> pb.TrainStepResponse:
        if not 1 <= request.num_updates <= MAX_TRAIN_STEP_UPDATES:
            raise ValueError(f"num_updates: must be in [1, {MAX_TRAIN_STEP_UPDATES}], got {request.num_updates}")
        run = self.replica.run(require_experiment_id(request.experiment_id), from_proto(request.config))
        seconds = run.train_now(request.num_updates)
        return pb.TrainStepResponse(stats=run.stats(), seconds=seconds)

    @rpc_errors
    def GetLearnerStats(self, request: pb.GetLearnerStatsRequest, context: grpc.ServicerContext
                        ) -> pb.GetLearnerStatsResponse:
        run = self.replica.runs.get(require_experiment_id(request.experiment_id))
        return pb.GetLearnerStatsResponse(stats=run.stats())

    @rpc_errors
    def ReleaseExperiment(self, request: common_pb2.ReleaseExperimentRequest, context: grpc.ServicerContext
                          ) -> common_pb2.ReleaseExperimentResponse:
        self.replica.release(require_experiment_id(request.experiment_id))
        return common_pb2.ReleaseExperimentResponse()


class LearnerMetrics:
    """The replica's training runs as Prometheus families."""

    def __init__(self, replica: LearnerReplica):
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        runs = [(e, run, run.stats()) for e, run in self.replica.runs.items()]
        yield counter("kuberl_learner_updates", "Gradient updates made", ((e, s.updates) for e, _, s in runs))
        yield counter("kuberl_learner_rate_limited_waits", "Times the samples-per-insert limit made the learner wait",
                      ((e, run.sampler.rate_limited) for e, run, _ in runs))
        yield gauge("kuberl_learner_loss", "Huber TD loss of the last update", ((e, s.last_loss) for e, _, s in runs))
        yield gauge("kuberl_learner_mean_q", "Mean Q-value of the last batch", ((e, s.mean_q) for e, _, s in runs))
        yield gauge("kuberl_learner_policy_version", "Newest published policy version",
                    ((e, s.policy_version) for e, _, s in runs))
        yield gauge("kuberl_learner_env_steps", "Environment steps the shards have received",
                    ((e, s.env_steps) for e, _, s in runs))
        yield gauge("kuberl_learner_evaluation_return", "Mean greedy return of the latest evaluation",
                    ((e, s.eval_return) for e, _, s in runs))
        yield gauge("kuberl_learner_result_return", "Return of the result (the best evaluated version)",
                    ((e, s.result_return) for e, _, s in runs))
        yield gauge("kuberl_learner_prefetch_queue_rounds", "Sampled rounds waiting for the update thread",
                    ((e, run.prefetched_rounds) for e, run, _ in runs))


class LearnerReplica:
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
            run = self.run(manifest.experiment_id, manifest.config)
            if not run.ended:  # one that cannot run (INVALID_SPEC) says so in its stats instead
                run.start()
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
                  host: str = "127.0.0.1") -> tuple[Server, LearnerReplica]:
    replica = LearnerReplica(buffer_target, policy_address, metrics)
    server = Server(LearnerServicer(replica), pb_grpc.add_LearnerServiceServicer_to_server, pb.DESCRIPTOR, port, host)
    return server, replica
