"""What the operator reads about a running experiment: its Deployments, its learner (gRPC) and
its metrics (analytics). Everything unreachable is simply not observed this time."""

from __future__ import annotations

import functools
import math
from datetime import datetime

import grpc

from kuberl.envs import describe
from kuberl.rpc import stub
from kuberl.v1 import analytics_service_pb2 as analytics_pb
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc
from kuberl.v1 import learner_service_pb2 as learner_pb
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc
from kuberl_operator import kube
from kuberl_operator.builders import ROLES, Experiment, Settings, selector_string
from kuberl_operator.status import LearnerView, Observation

RPC_TIMEOUT = 2.0
MEAN_RETURN_WINDOW = 100


@functools.lru_cache(maxsize=64)
def _has_reward_threshold(env_id: str) -> bool:
    try:
        return describe(env_id).reward_threshold is not None
    except ValueError:
        return True


def learner_view(exp: Experiment, settings: Settings) -> LearnerView | None:
    try:
        stats = stub(learner_grpc.LearnerServiceStub, exp.address("learner", settings)).GetLearnerStats(
            learner_pb.GetLearnerStatsRequest(experiment_id=exp.name), timeout=RPC_TIMEOUT).stats
    except grpc.RpcError:
        return None
    return LearnerView(state=learner_pb.TrainingState.Name(stats.state).removeprefix("TRAINING_STATE_"),
                       updates=stats.updates, env_steps=stats.env_steps, policy_version=stats.policy_version,
                       eval_return=stats.eval_return if stats.updates else math.nan, message=stats.message)


def episode_returns(exp: Experiment, settings: Settings) -> tuple[int | None, float | None]:
    try:
        reply = stub(analytics_grpc.AnalyticsServiceStub, settings.analytics_address).QueryMetrics(
            analytics_pb.QueryMetricsRequest(experiment_id=exp.name, metric="charts/episodic_return",
                                             limit=MEAN_RETURN_WINDOW, newest_first=True), timeout=RPC_TIMEOUT)
    except grpc.RpcError:
        return None, None
    mean = sum(p.value for p in reply.points) / len(reply.points) if reply.points else None
    return reply.total, mean


def observe(exp: Experiment, generation: int, now: datetime, settings: Settings) -> Observation:
    ready, crash_loops = {}, {}
    for role in ROLES:
        count = kube.ready_replicas(exp.namespace, exp.child_name(role))
        if count is not None:
            ready[role] = count
        restarts = kube.crash_loops(exp.namespace, selector_string(exp, role))
        if restarts:
            crash_loops[role] = restarts
    episodes, mean_return = episode_returns(exp, settings)
    return Observation(generation=generation, now=now, ready=ready, crash_loops=crash_loops,
                       learner=learner_view(exp, settings), episodes=episodes,
                       mean_return=mean_return,
                       budget_is_the_goal=exp.config.stop.target_return is None
                       and not _has_reward_threshold(exp.config.env_id))
