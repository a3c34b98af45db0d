"""What every mode reads about a running experiment over gRPC: its learner's view and its
training returns (from analytics). Whatever does not answer is simply not observed this time."""

from __future__ import annotations

import math

import grpc

from kuberl.lifecycle import LearnerView
from kuberl.rpc import stub
from kuberl.v1 import analytics_service_pb2 as analytics_pb
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc
from kuberl.v1 import learner_service_pb2 as learner_pb
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc

MEAN_RETURN_WINDOW = 100  # episodes, as Gymnasium's reward thresholds are meant


def learner_view(address: str, experiment_id: str, timeout: float) -> LearnerView | None:
    """The learner's view, or None when it does not answer (or does not know the experiment)."""
    try:
        return ask_learner(address, experiment_id, timeout)
    except grpc.RpcError:
        return None


def ask_learner(address: str, experiment_id: str, timeout: float) -> LearnerView:
    """The learner's view; raises grpc.RpcError (NOT_FOUND: it does not know the experiment)."""
    stats = stub(learner_grpc.LearnerServiceStub, address).GetLearnerStats(
        learner_pb.GetLearnerStatsRequest(experiment_id=experiment_id), timeout=timeout).stats
    return LearnerView(state=learner_pb.TrainingState.Name(stats.state).removeprefix("TRAINING_STATE_"),
                       updates=stats.updates, env_steps=stats.env_steps, policy_version=stats.policy_version,
                       eval_return=stats.eval_return if stats.updates else math.nan, message=stats.message,
                       buffer_size=stats.buffer_size, shards=stats.shards, result_version=stats.result_version,
                       result_return=stats.result_return, result_episodes=stats.result_episodes)


def episode_returns(address: str, experiment_id: str, timeout: float) -> tuple[int | None, float | None]:
    """(training episodes so far, mean return of the newest MEAN_RETURN_WINDOW), or Nones."""
    try:
        reply = stub(analytics_grpc.AnalyticsServiceStub, address).QueryMetrics(
            analytics_pb.QueryMetricsRequest(experiment_id=experiment_id, metric="charts/episodic_return",
                                             limit=MEAN_RETURN_WINDOW, newest_first=True), timeout=timeout)
    except grpc.RpcError:
        return None, None
    mean = sum(p.value for p in reply.points) / len(reply.points) if reply.points else None
    return reply.total, mean
