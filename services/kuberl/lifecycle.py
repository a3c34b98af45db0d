"""An experiment's lifecycle, the same in every mode: its phases, the conditions and reasons
that explain them, and how many replicas each role should have in each phase.

Pure functions of what the user asked (`Intent`), what was last recorded (the previous status:
a finished run stays finished) and what was just observed (`Observation`). The operator
writes the result as an RLExperiment's status; the experiment API and `kuberl run` report the
same dict. Nobody else derives a phase: the learner owns the verdict (its stop rule), this
module owns what the verdict means.

Conditions follow the Kubernetes API conventions: a list keyed by `type`, each with a
CamelCase `reason` and a human `message`, a `lastTransitionTime` that only moves when the
condition's status does; `Ready` summarises readiness, `Succeeded`/`Failed` end a run (and
stay once true), and the phase is computed from them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kuberl.config import ExperimentConfig

# The roles an experiment has replicas of; the policy, analytics and experiment roles are shared.
EXPERIMENT_ROLES = ("environment", "buffer", "learner")


class Phase(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"  # paused by the user: resumable, replay and weights kept
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"  # ended by the user: terminal, results kept

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.STOPPED)


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
    STOPPED = "StoppedByUser"
    INVALID_SPEC = "InvalidSpec"
    CRASH_LOOP = "CrashLoop"


# The learner's terminal states (learner_service.proto TrainingState, without its prefix) and
# the end each one is.
VERDICTS: dict[str, tuple[Phase, str]] = {
    "SOLVED": (Phase.SUCCEEDED, Reason.TARGET_REACHED),
    "BUDGET_SPENT": (Phase.SUCCEEDED, Reason.BUDGET_SPENT),
    "BUDGET_EXHAUSTED": (Phase.FAILED, Reason.BUDGET_EXHAUSTED),
    "FAILED": (Phase.FAILED, Reason.TRAINING_FAILED),
    "INVALID_SPEC": (Phase.FAILED, Reason.INVALID_SPEC),
}


@dataclass(frozen=True)
class Intent:
    """What the user asked of an experiment."""

    config: ExperimentConfig
    suspend: bool = False
    stop: bool = False


@dataclass(frozen=True)
class LearnerView:
    state: str  # a TrainingState name without its prefix
    updates: int = 0
    env_steps: int = 0
    policy_version: int = 0
    eval_return: float = math.nan
    message: str = ""
    buffer_size: int = 0
    shards: int = 0  # shards the learner samples from
    result_version: int = -1  # the best evaluated version; -1 before any evaluation
    result_return: float = math.nan
    result_episodes: int = 0


@dataclass(frozen=True)
class Observation:
    generation: int
    now: datetime
    ready: dict[str, int] = field(default_factory=dict)  # role -> ready replicas (absent: none made yet)
    crash_loops: dict[str, int] = field(default_factory=dict)  # role -> restarts of a crash-looping replica
    learner: LearnerView | None = None  # None: learner unreachable or not running
    episodes: int | None = None
    mean_return: float | None = None
    # A role whose replica has crash-looped this many times fails the run: restarting it
    # again only burns the machine (and its actors fill nothing).
    crash_loop_restart_limit: int = 10


def desired_replicas(intent: Intent, phase: Phase) -> dict[str, int]:
    """Suspended or finished: no actors and no learner; shards stay, with their replay."""
    running = not (intent.suspend or phase.finished)
    return {"environment": intent.config.environment.replicas if running else 0,
            "buffer": intent.config.buffer.replicas, "learner": 1 if running else 0}


def recorded_phase(status: dict[str, Any] | None) -> Phase:
    """The phase a status records (Pending when it records none)."""
    try:
        return Phase((status or {}).get("phase") or Phase.PENDING)
    except ValueError:
        return Phase.PENDING


def is_finished(status: dict[str, Any] | None) -> bool:
    return recorded_phase(status).finished


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # status times, as Kubernetes writes them


def _time(now: datetime) -> str:
    return now.strftime(TIME_FORMAT)


def parse_time(stamp: str) -> datetime:
    """A status time (startTime, completionTime) back as an aware datetime."""
    return datetime.strptime(stamp, TIME_FORMAT).replace(tzinfo=timezone.utc)


def _condition(previous: dict[str, dict], now: datetime, generation: int, type_: str, status: str, reason: str,
               message: str) -> dict[str, Any]:
    old = previous.get(type_)
    moved = old is None or old.get("status") != status
    return {"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": generation,
            "lastTransitionTime": _time(now) if moved else old.get("lastTransitionTime", _time(now))}


def _is_true(previous: dict[str, dict], type_: str) -> bool:
    return previous.get(type_, {}).get("status") == "True"


def _kept(old: dict[str, dict], type_: str, key: str, value: str) -> str:
    """A true condition keeps the reason and message it became true with."""
    return old[type_][key] if _is_true(old, type_) else value


def _finite_or(value: float | None, fallback: Any) -> Any:
    return value if value is not None and math.isfinite(value) else fallback


def _end(intent: Intent, previous: dict[str, Any], old: dict[str, dict], obs: Observation
         ) -> tuple[Phase, str, str] | None:
    """The run's end (phase, reason, message), or None while it has none. An end stays once
    reached; a Failed that was only an invalid spec does not (a corrected spec clears it)."""
    before = recorded_phase(previous)
    if before.finished and not (before is Phase.FAILED and old.get("Failed", {}).get("reason") == Reason.INVALID_SPEC):
        kind = "Failed" if before is Phase.FAILED else "Succeeded"  # a stop is told in Succeeded
        return before, old.get(kind, {}).get("reason", Reason.STOPPED), old.get(kind, {}).get("message", "")
    learner_state = obs.learner.state if obs.learner else ""
    if learner_state in VERDICTS:
        phase, reason = VERDICTS[learner_state]
        return phase, reason, obs.learner.message
    crashed = {role: n for role, n in obs.crash_loops.items() if n >= obs.crash_loop_restart_limit}
    if crashed:
        return Phase.FAILED, Reason.CRASH_LOOP, "; ".join(
            f"{role} crash-looped {n} times; see its logs" for role, n in crashed.items())
    if intent.stop:
        return Phase.STOPPED, Reason.STOPPED, "stopped on request; results kept"
    return None


def compute_status(intent: Intent, previous: dict[str, Any] | None, obs: Observation) -> dict[str, Any]:
    """The experiment's status (the RLExperiment status vocabulary) after this observation."""
    previous = dict(previous or {})
    old = {c["type"]: c for c in previous.get("conditions", []) if "type" in c}
    cond = lambda *args: _condition(old, obs.now, obs.generation, *args)  # noqa: E731
    end = _end(intent, previous, old, obs)

    if end is None:
        learner_started = bool(obs.learner and obs.learner.state)
        if intent.suspend:
            phase = Phase.SUSPENDED
        elif learner_started or recorded_phase(previous) is Phase.RUNNING:
            # Once training has started, a role that restarts shows in Ready, not as Pending again.
            phase = Phase.RUNNING
        else:
            phase = Phase.PENDING
    else:
        phase = end[0]
    desired = desired_replicas(intent, phase)

    replicas, waiting = {}, []
    for role in EXPERIMENT_ROLES:
        ready = obs.ready.get(role)
        replicas[role] = {"replicas": desired[role], "readyReplicas": ready or 0}
        if ready is None:
            waiting.append(f"{role}: no replicas yet")
        elif ready < desired[role]:
            waiting.append(f"{role}: {ready}/{desired[role]} ready")
        if role in obs.crash_loops:
            waiting.append(f"{role}: crash-looping ({obs.crash_loops[role]} restarts)")
    summary = ", ".join(f"{r} {replicas[r]['readyReplicas']}/{replicas[r]['replicas']}" for r in EXPERIMENT_ROLES)

    if phase is Phase.SUCCEEDED:
        succeeded_c = cond("Succeeded", "True", _kept(old, "Succeeded", "reason", end[1]),
                           _kept(old, "Succeeded", "message", end[2]))
    elif end is not None:
        why = Reason.STOPPED if phase is Phase.STOPPED else Reason.FINISHED
        succeeded_c = cond("Succeeded", "False", why, end[2] if phase is Phase.STOPPED
                           else "the run ended without success")
    else:
        succeeded_c = cond("Succeeded", "Unknown", Reason.TRAINING, "training has not met the stop rule yet")
    if phase is Phase.FAILED:
        failed_c = cond("Failed", "True", _kept(old, "Failed", "reason", end[1]),
                        _kept(old, "Failed", "message", end[2]))
    else:
        failed_c = cond("Failed", "False", Reason.FINISHED if end else Reason.TRAINING, "no failure observed")
    ready_c = cond("Ready", "False" if waiting else "True",
                   Reason.REPLICAS_NOT_READY if waiting else Reason.ALL_REPLICAS_READY,
                   "; ".join(waiting) if waiting else f"ready replicas: {summary}")
    suspended_c = cond("Suspended", "True" if intent.suspend else "False",
                       Reason.SUSPENDED if intent.suspend else Reason.NOT_SUSPENDED,
                       "actors and learner scaled to zero; replay kept" if intent.suspend else "not suspended")

    learner = obs.learner
    status: dict[str, Any] = {
        "phase": phase.value,
        "message": (end[2] if end else "") or ready_c["message"],
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
    if learner is not None and learner.result_version >= 0 and math.isfinite(learner.result_return):
        status["result"] = {"policyVersion": learner.result_version, "meanReturn": round(learner.result_return, 3),
                            "episodes": learner.result_episodes}
    elif "result" in previous:
        status["result"] = previous["result"]
    if end is not None:
        status["completionTime"] = previous.get("completionTime") or _time(obs.now)
    return status


@dataclass(frozen=True)
class Transition:
    """One change between two statuses, told as a Kubernetes Event is (or a log line locally)."""

    type: str  # "Normal" or "Warning"
    reason: str
    message: str


def transitions(previous: dict[str, Any] | None, status: dict[str, Any]) -> list[Transition]:
    """The phase change and every condition whose status moved. A condition that first appears
    False or Unknown is not news; one that appears True is."""
    previous = previous or {}
    told: list[Transition] = []
    before, after = previous.get("phase"), status.get("phase")
    if after != before:
        told.append(Transition("Warning" if after == Phase.FAILED.value else "Normal", f"Phase{after}",
                               f"{before or 'new'} -> {after}: {status.get('message', '')}"))
    old = {c["type"]: c for c in previous.get("conditions", []) if "type" in c}
    for condition in status.get("conditions", []):
        was = old.get(condition["type"], {}).get("status")
        if condition["status"] == was or (was is None and condition["status"] != "True"):
            continue
        bad = (condition["type"], condition["status"]) in (("Failed", "True"), ("Ready", "False"))
        told.append(Transition("Warning" if bad else "Normal", condition["reason"],
                               f"{condition['type']} is {condition['status']}: {condition['message']}"))
    return told


def invalid_spec_status(previous: dict[str, Any] | None, generation: int, now: datetime, message: str
                        ) -> dict[str, Any]:
    """Status of an experiment whose spec cannot be used: Failed with reason InvalidSpec, until
    a corrected spec (a new generation) is reconciled."""
    previous = dict(previous or {})
    old = {c["type"]: c for c in previous.get("conditions", []) if "type" in c}
    conditions = [_condition(old, now, generation, "Ready", "False", Reason.INVALID_SPEC, message),
                  _condition(old, now, generation, "Failed", "True", Reason.INVALID_SPEC, message)]
    return {"phase": Phase.FAILED.value, "message": message, "observedGeneration": generation,
            "conditions": conditions + [c for t, c in old.items() if t not in ("Ready", "Failed")]}
