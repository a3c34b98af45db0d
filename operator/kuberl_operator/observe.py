"""What the operator reads about a running experiment: its workloads (Deployments, the shards'
StatefulSet) and pods (listed once per observation by the caller), its learner and its training
returns."""

from __future__ import annotations

from datetime import datetime

from kuberl.lifecycle import Observation
from kuberl.observe import episode_returns, learner_view
from kuberl_operator.builders import ROLES, Experiment, Settings, workload_kind

RPC_TIMEOUT = 2.0


def _role(obj: dict) -> str:
    return (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component", "")


def ready_replicas(exp: Experiment, workloads: list[dict]) -> dict[str, int]:
    """role -> ready replicas of its workload; a role without one is absent."""
    kinds = {(workload_kind(role), exp.child_name(role)): role for role in ROLES}
    return {kinds[(w["kind"], w["metadata"]["name"])]: (w.get("status") or {}).get("readyReplicas") or 0
            for w in workloads if (w["kind"], w["metadata"]["name"]) in kinds}


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


def observe(exp: Experiment, generation: int, now: datetime, settings: Settings, workloads: list[dict],
            pods: list[dict]) -> Observation:
    episodes, mean_return = episode_returns(settings.analytics_address, exp.experiment_id, RPC_TIMEOUT)
    learner = learner_view(exp.address("learner", settings), exp.experiment_id, RPC_TIMEOUT)
    return Observation(generation=generation, now=now, ready=ready_replicas(exp, workloads),
                       crash_loops=crash_loops(pods), learner=learner,
                       episodes=episodes, mean_return=mean_return,
                       crash_loop_restart_limit=settings.crash_loop_restart_limit)
