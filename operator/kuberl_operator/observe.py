"""What the operator reads about a running experiment: its Deployments and pods (listed once
per observation by the caller), its learner (gRPC) and its metrics (analytics). Everything
unreachable is simply not observed this time."""

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
from kuberl_operator.builders import ROLES, Experiment, Settings
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


def _role(obj: dict) -> str:
    return (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component", "")


def ready_replicas(exp: Experiment, deployments: list[dict]) -> dict[str, int]:
    """role -> ready replicas of its Deployment; a role without one is absent."""
    names = {exp.child_name(role): role for role in ROLES}
    return {names[d["metadata"]["name"]]: (d.get("status") or {}).get("readyReplicas") or 0
            for d in deployments if d["metadata"]["name"] in names}


def crash_loops(pods: list[dict]) -> dict[str, int]:
    """role -> the most restarts of any of its containers now in CrashLoopBackOff."""
    worst: dict[str, int] = {}
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                role = _role(pod)
                worst[role] = max(worst.get(role, 0), container.get("restartCount") or 0)
    return worst


def observe(exp: Experiment, generation: int, now: datetime, settings: Settings, deployments: list[dict],
            pods: list[dict]) -> Observation:
    episodes, mean_return = episode_returns(exp, settings)
    return Observation(generation=generation, now=now, ready=ready_replicas(exp, deployments),
                       crash_loops=crash_loops(pods), learner=learner_view(exp, settings), episodes=episodes,
                       mean_return=mean_return, crash_loop_restart_limit=settings.crash_loop_restart_limit,
                       budget_is_the_goal=exp.config.stop.target_return is None
                       and not _has_reward_threshold(exp.config.env_id))
