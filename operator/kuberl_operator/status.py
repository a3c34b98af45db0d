"""An RLExperiment's status as a pure function of what the operator observed.

Conditions follow the Kubernetes API conventions: a list keyed by `type`, each with a
CamelCase `reason` and a human `message`, a `lastTransitionTime` that only moves when the
condition's status does; `Ready` summarises readiness, `Succeeded`/`Failed` end a bounded run
(and stay once true), and the `phase` column is computed from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kuberl_operator.builders import ROLES, Experiment, desired_replicas, selector_string

# Learner states (learner_service.proto TrainingState names, without the prefix).
SOLVED, BUDGET_EXHAUSTED, FAILED = "SOLVED", "BUDGET_EXHAUSTED", "FAILED"


class Reason:
    ALL_REPLICAS_READY = "AllReplicasReady"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    SUSPENDED = "SuspendedBySpec"
    NOT_SUSPENDED = "NotSuspended"
    TARGET_REACHED = "TargetReturnReached"
    BUDGET_SPENT = "BudgetSpent"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    TRAINING_FAILED = "TrainingFailed"
    TRAINING = "Training"
    FINISHED = "Finished"
    INVALID_SPEC = "InvalidSpec"
    CRASH_LOOP = "CrashLoop"




@dataclass(frozen=True)
class LearnerView:
    state: str
    updates: int = 0
    env_steps: int = 0
    policy_version: int = 0
    eval_return: float = math.nan
    message: str = ""


@dataclass(frozen=True)
class Observation:
    generation: int
    now: datetime
    ready: dict[str, int] = field(default_factory=dict)  # role -> ready replicas (absent: no Deployment)
    crash_loops: dict[str, int] = field(default_factory=dict)  # role -> restarts of a crash-looping container
    learner: LearnerView | None = None  # None: learner unreachable or not running
    episodes: int | None = None
    mean_return: float | None = None
    budget_is_the_goal: bool = False  # no target return: spending maxEnvSteps is success
    # A role whose container has crash-looped this many times fails the run: restarting it
    # again only burns the cluster (and its actors fill nothing).
    crash_loop_restart_limit: int = 10


def _time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(previous: dict[str, dict], now: datetime, generation: int, type_: str, status: str, reason: str,
               message: str) -> dict[str, Any]:
    old = previous.get(type_)
    moved = old is None or old.get("status") != status
    return {"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": generation,
            "lastTransitionTime": _time(now) if moved else old.get("lastTransitionTime", _time(now))}


def _is_true(previous: dict[str, dict], type_: str) -> bool:
    return previous.get(type_, {}).get("status") == "True"


def _finite_or(value: float | None, fallback: Any) -> Any:
    return value if value is not None and math.isfinite(value) else fallback


def compute_status(exp: Experiment, previous: dict[str, Any] | None, obs: Observation) -> dict[str, Any]:
    previous = dict(previous or {})
    old_conditions = {c["type"]: c for c in previous.get("conditions", []) if "type" in c}
    cond = lambda *args: _condition(old_conditions, obs.now, obs.generation, *args)  # noqa: E731

    # Succeeded and Failed stay once reached: a finished run is finished.
    learner_state = obs.learner.state if obs.learner else ""
    succeeded = _is_true(old_conditions, "Succeeded") or learner_state == SOLVED or (
        learner_state == BUDGET_EXHAUSTED and obs.budget_is_the_goal)
    failed_before = _is_true(old_conditions, "Failed") and old_conditions["Failed"].get("reason") != Reason.INVALID_SPEC
    crashed = {role: n for role, n in obs.crash_loops.items() if n >= obs.crash_loop_restart_limit}
    failed = not succeeded and (failed_before or learner_state == FAILED or bool(crashed) or (
        learner_state == BUDGET_EXHAUSTED and not obs.budget_is_the_goal))
    finished = succeeded or failed
    learner_message = obs.learner.message if obs.learner else ""

    replicas, waiting = {}, []
    for role in ROLES:
        desired = 0 if finished and role != "buffer" else desired_replicas(exp, role)
        ready = obs.ready.get(role)
        replicas[role] = {"replicas": desired, "readyReplicas": ready or 0, "selector": selector_string(exp, role)}
        if ready is None:
            waiting.append(f"{role}: no Deployment yet")
        elif ready < desired:
            waiting.append(f"{role}: {ready}/{desired} ready")
        if role in obs.crash_loops:
            waiting.append(f"{role}: crash-looping ({obs.crash_loops[role]} restarts)")
    summary = ", ".join(f"{r} {replicas[r]['readyReplicas']}/{replicas[r]['replicas']}" for r in ROLES)

    if succeeded:
        reason = Reason.TARGET_REACHED if learner_state != BUDGET_EXHAUSTED else Reason.BUDGET_SPENT
        succeeded_c = cond("Succeeded", "True", _reason_kept(old_conditions, "Succeeded", reason),
                           _message_kept(old_conditions, "Succeeded", learner_message))
    else:
        succeeded_c = cond("Succeeded", "False" if failed else "Unknown", Reason.FINISHED if failed else Reason.TRAINING,
                           "the run ended without success" if failed else "training has not met the stop rule yet")
    if failed:
        if crashed:
            reason, message = Reason.CRASH_LOOP, "; ".join(
                f"{role} crash-looped {n} times (CrashLoopBackOff); see its pod logs" for role, n in crashed.items())
        else:
            reason = Reason.TRAINING_FAILED if learner_state == FAILED else Reason.BUDGET_EXHAUSTED
            message = learner_message
        failed_c = cond("Failed", "True", _reason_kept(old_conditions, "Failed", reason),
                        _message_kept(old_conditions, "Failed", message))
    else:
        failed_c = cond("Failed", "False", Reason.TRAINING if not succeeded else Reason.FINISHED,
                        "no failure observed")
    ready_c = cond("Ready", "False" if waiting else "True",
                   Reason.REPLICAS_NOT_READY if waiting else Reason.ALL_REPLICAS_READY,
                   "; ".join(waiting) if waiting else f"ready replicas: {summary}")
    suspended_c = cond("Suspended", "True" if exp.suspend else "False",
                       Reason.SUSPENDED if exp.suspend else Reason.NOT_SUSPENDED,
                       "actors and learner scaled to zero; replay kept" if exp.suspend else "not suspended")

    if succeeded:
        phase = "Succeeded"
    elif failed:
        phase = "Failed"
    elif exp.suspend:
        phase = "Suspended"
    elif learner_state or (previous.get("phase") == "Running" and not exp.suspend):
        # Once training has started, a role that restarts shows in Ready, not as Pending again.
        phase = "Running"
    else:
        phase = "Pending"

    learner = obs.learner
    status: dict[str, Any] = {
        "phase": phase,
        "message": (failed_c["message"] if failed else learner_message if finished else "") or ready_c["message"],
        "observedGeneration": obs.generation,
        "conditions": [ready_c, suspended_c, succeeded_c, failed_c],
        "startTime": previous.get("startTime") or _time(obs.now),
        "envSteps": learner.env_steps if learner else previous.get("envSteps", 0),
        "updates": learner.updates if learner else previous.get("updates", 0),
        "policyVersion": learner.policy_version if learner else previous.get("policyVersion", 0),
        "episodes": obs.episodes if obs.episodes is not None else previous.get("episodes", 0),
        **replicas,
    }
    for key, value in (("meanReturn", obs.mean_return), ("evalReturn", learner.eval_return if learner else None)):
        kept = _finite_or(value, previous.get(key))
        if kept is not None:
            status[key] = round(float(kept), 3)
    if finished:
        status["completionTime"] = previous.get("completionTime") or _time(obs.now)
    return status


def invalid_spec_status(previous: dict[str, Any] | None, generation: int, now: datetime, message: str
                        ) -> dict[str, Any]:
    """Status of an experiment whose spec cannot be used: Failed with reason InvalidSpec, until
    a corrected spec (a new generation) is reconciled."""
    previous = dict(previous or {})
    old = {c["type"]: c for c in previous.get("conditions", []) if "type" in c}
    conditions = [_condition(old, now, generation, "Ready", "False", Reason.INVALID_SPEC, message),
                  _condition(old, now, generation, "Failed", "True", Reason.INVALID_SPEC, message)]
    return {"phase": "Failed", "message": message, "observedGeneration": generation,
            "conditions": conditions + [c for t, c in old.items() if t not in ("Ready", "Failed")]}


def _reason_kept(old: dict[str, dict], type_: str, reason: str) -> str:
    return old[type_]["reason"] if _is_true(old, type_) else reason


def _message_kept(old: dict[str, dict], type_: str, message: str) -> str:
    return old[type_]["message"] if _is_true(old, type_) else message


class StatusWrites:
    """The status each experiment was last patched to, and the resourceVersion it was computed
    from. The watch that feeds the operator's index may lag behind the operator's own patch; a
    visit that computed from the older status would write again (a condition's
    lastTransitionTime moved to a later second), so while the index still shows the version a
    patch was based on, the status last written stands in for it."""

    def __init__(self) -> None:
        self._written: dict[tuple[str, str], tuple[str | None, dict[str, Any]]] = {}

    @staticmethod
    def _key(body: dict[str, Any]) -> tuple[str, str]:
        return body["metadata"]["namespace"], body["metadata"]["name"]

    def latest(self, body: dict[str, Any]) -> dict[str, Any]:
        based_on, written = self._written.get(self._key(body), (None, {}))
        if based_on is not None and based_on == body["metadata"].get("resourceVersion"):
            return {**body["status"], **written}  # what a merge patch of `written` made of it
        return body["status"]

    def remember(self, body: dict[str, Any], written: dict[str, Any]) -> None:
        self._written[self._key(body)] = (body["metadata"].get("resourceVersion"), written)

    def forget(self, body: dict[str, Any]) -> None:
        self._written.pop(self._key(body), None)


def is_finished(status: dict[str, Any] | None) -> bool:
    return (status or {}).get("phase") in ("Succeeded", "Failed")
