"""The lifecycle: status as a pure function of intent, the last status and observations
(conditions, phase, and what stays once reached), the same in every mode."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from kuberl.config import from_spec
from kuberl.lifecycle import Intent, LearnerView, Observation, Phase, compute_status, desired_replicas, transitions
from kuberl_operator.builders import Experiment
from kuberl_operator.status import StatusWrites

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
ALL_READY = {"environment": 2, "buffer": 2, "learner": 1}


def exp(spec=None) -> Intent:
    spec = {"environment": {"replicas": 2}, "buffer": {"replicas": 2}, **(spec or {})}
    flags = {key: spec.pop(key) for key in ("suspend", "stopped") if key in spec}
    return Intent(from_spec(spec), suspend=flags.get("suspend", False), stop=flags.get("stopped", False))


def conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_first_visit_is_pending_with_every_condition_set():
    status = compute_status(exp(), None, Observation(generation=1, now=T0))
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
    c = conditions(status)
    assert set(c) == {"Ready", "Suspended", "Succeeded", "Failed"}
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "ReplicasNotReady"
    assert c["Succeeded"]["status"] == "Unknown"
    assert all(x["reason"][0].isupper() and " " not in x["reason"] for x in c.values())
    assert status["startTime"] == "2026-11-24T12:00:00Z" and "completionTime" not in status


def test_running_when_ready_and_training_then_succeeded_and_it_stays():
    training = Observation(generation=1, now=T0, ready=ALL_READY, episodes=40, mean_return=21.5,
                           learner=LearnerView("TRAINING", updates=100, env_steps=5000, policy_version=2))
    running = compute_status(exp(), None, training)
    assert running["phase"] == "Running" and conditions(running)["Ready"]["status"] == "True"
    assert (running["envSteps"], running["episodes"], running["meanReturn"]) == (5000, 40, 21.5)
    assert "evalReturn" not in running  # NaN before the first evaluation is left out

    solved = Observation(generation=1, now=T0 + timedelta(seconds=30), ready=ALL_READY,
                         learner=LearnerView("SOLVED", 900, 30000, 18, 500.0, "greedy return 500.0 >= 475",
                                             result_version=17, result_return=491.25, result_episodes=100))
    assert "result" not in running  # nothing evaluated yet
    done = compute_status(exp(), running, solved)
    assert done["result"] == {"policyVersion": 17, "meanReturn": 491.25, "episodes": 100}
    assert done["phase"] == "Succeeded" and done["completionTime"] == "2026-11-24T12:00:30Z"
    assert conditions(done)["Succeeded"]["reason"] == "TargetReturnReached"
    assert done["environment"]["replicas"] == 0 and done["learner"]["replicas"] == 0
    assert done["buffer"]["replicas"] == 2

    # The learner is scaled away afterwards: nothing observed, and nothing forgotten.
    later = compute_status(exp(), done, Observation(generation=1, now=T0 + timedelta(minutes=5),
                                                                ready={"environment": 0, "buffer": 2, "learner": 0}))
    assert later["phase"] == "Succeeded" and later["envSteps"] == 30000 and later["evalReturn"] == 500.0
    assert later["result"] == done["result"]
    assert later["completionTime"] == done["completionTime"]
    assert conditions(later)["Succeeded"]["lastTransitionTime"] == "2026-11-24T12:00:30Z"


def test_the_learners_verdict_is_the_end_it_names():
    obs = dict(generation=3, now=T0, ready=ALL_READY)
    failed = compute_status(exp(), None, Observation(**obs, learner=LearnerView("BUDGET_EXHAUSTED", message="spent")))
    assert failed["phase"] == "Failed" and conditions(failed)["Failed"]["reason"] == "BudgetExhausted"
    assert conditions(failed)["Succeeded"]["status"] == "False"
    spent = compute_status(exp(), None, Observation(**obs, learner=LearnerView("BUDGET_SPENT", message="spent")))
    assert spent["phase"] == "Succeeded" and conditions(spent)["Succeeded"]["reason"] == "BudgetSpent"
    broken = compute_status(exp(), None, Observation(**obs, learner=LearnerView("FAILED", message="NaN loss")))
    assert broken["phase"] == "Failed" and conditions(broken)["Failed"]["reason"] == "TrainingFailed"
    assert broken["message"] == "NaN loss"


def test_stop_is_final_keeps_the_shards_and_the_figures():
    running = compute_status(exp(), None, Observation(generation=1, now=T0, ready=ALL_READY, episodes=12,
                                                      learner=LearnerView("TRAINING", 50, 4000, 3)))
    stopped = compute_status(exp({"stopped": True}), running, Observation(generation=2, now=T0 + timedelta(seconds=3),
                                                                        ready=ALL_READY))
    assert stopped["phase"] == "Stopped" and stopped["completionTime"] == "2026-11-24T12:00:03Z"
    assert conditions(stopped)["Succeeded"]["reason"] == "StoppedByUser"
    assert conditions(stopped)["Failed"]["status"] == "False"
    assert (stopped["environment"]["replicas"], stopped["buffer"]["replicas"], stopped["learner"]["replicas"]) == (
        0, 2, 0)
    assert stopped["envSteps"] == 4000 and stopped["episodes"] == 12
    # Un-stopping the spec does not bring it back; a learner verdict arriving late does not rewrite it.
    later = compute_status(exp(), stopped, Observation(generation=3, now=T0 + timedelta(minutes=1), ready=ALL_READY,
                                                       learner=LearnerView("SOLVED", message="late")))
    assert later["phase"] == "Stopped" and later["completionTime"] == stopped["completionTime"]


def test_each_phase_has_its_replicas():
    spec = exp({"environment": {"replicas": 4}, "buffer": {"replicas": 3}})
    for phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.STOPPED):
        assert desired_replicas(spec, phase) == {"environment": 0, "buffer": 3, "learner": 0}
    for phase in (Phase.PENDING, Phase.RUNNING):
        assert desired_replicas(spec, phase) == {"environment": 4, "buffer": 3, "learner": 1}
    assert desired_replicas(exp({"environment": {"replicas": 4}, "suspend": True}), Phase.SUSPENDED)["learner"] == 0


def test_suspend_is_reported_and_resume_is_right_again():
    suspended = compute_status(exp({"suspend": True}), None,
                               Observation(generation=2, now=T0, ready={"environment": 0, "buffer": 2, "learner": 0}))
    assert suspended["phase"] == "Suspended" and conditions(suspended)["Suspended"]["status"] == "True"
    assert conditions(suspended)["Ready"]["status"] == "True"  # zero of zero is ready
    resumed = compute_status(exp(), suspended, Observation(generation=3, now=T0 + timedelta(seconds=9),
                                                           ready=ALL_READY, learner=LearnerView("TRAINING")))
    assert resumed["phase"] == "Running" and conditions(resumed)["Suspended"]["status"] == "False"
    assert conditions(resumed)["Suspended"]["lastTransitionTime"] == "2026-11-24T12:00:09Z"
    assert resumed["observedGeneration"] == 3


def test_a_running_experiment_whose_shard_restarts_stays_running_and_not_ready():
    running = compute_status(exp(), None, Observation(generation=1, now=T0, ready=ALL_READY,
                                                      learner=LearnerView("TRAINING", 5, 100)))
    restarting = compute_status(exp(), running, Observation(generation=1, now=T0 + timedelta(seconds=5),
                                                            ready={**ALL_READY, "buffer": 1}))
    assert restarting["phase"] == "Running"
    assert conditions(restarting)["Ready"]["status"] == "False"
    assert "buffer: 1/2 ready" in conditions(restarting)["Ready"]["message"]


def test_unchanged_observations_give_an_identical_status():
    obs = Observation(generation=1, now=T0, ready=ALL_READY, learner=LearnerView("TRAINING", 5, 100),
                      mean_return=math.nan)
    first = compute_status(exp(), None, obs)
    again = compute_status(exp(), first, Observation(**{**obs.__dict__, "now": T0 + timedelta(minutes=1)}))
    assert again == first  # nothing to write: times move only on transitions


def test_a_crash_loop_is_reported_then_capped():
    looping = Observation(generation=1, now=T0, ready={"environment": 2, "buffer": 2, "learner": 0},
                          crash_loops={"learner": 3})
    early = compute_status(exp(), None, looping)
    assert early["phase"] == "Pending"
    assert "learner: crash-looping (3 restarts)" in conditions(early)["Ready"]["message"]
    capped = compute_status(exp(), early, Observation(**{**looping.__dict__, "crash_loops": {"learner": 10}}))
    assert capped["phase"] == "Failed" and conditions(capped)["Failed"]["reason"] == "CrashLoop"
    assert "learner crash-looped 10 times" in capped["message"]
    assert capped["environment"]["replicas"] == 0 and capped["learner"]["replicas"] == 0


def test_ready_replicas_and_crash_loops_are_read_from_the_listed_objects():
    from kuberl_operator.observe import crash_loops, ready_replicas

    workloads = [{"kind": kind, "metadata": {"name": f"cartpole-{role}"}, "status": {"readyReplicas": n} if n else {}}
                 for kind, role, n in (("Deployment", "environment", 2), ("StatefulSet", "buffer", 0))]
    workloads.append({"kind": "Deployment", "metadata": {"name": "somebody-else-learner"},
                      "status": {"readyReplicas": 1}})
    workloads.append({"kind": "Deployment", "metadata": {"name": "cartpole-buffer"},  # an older layout's
                      "status": {"readyReplicas": 3}})
    cartpole = Experiment.from_body("cartpole", "default", {})
    assert ready_replicas(cartpole, workloads) == {"environment": 2, "buffer": 0}

    def pod(role: str, *containers: tuple[str, int]) -> dict:
        return {"metadata": {"labels": {"app.kubernetes.io/component": role}},
                "status": {"containerStatuses": [{"restartCount": n, "state": {"waiting": {"reason": r}} if r else
                                                  {"running": {}}} for r, n in containers]}}

    pods = [pod("learner", ("CrashLoopBackOff", 4)), pod("learner", ("CrashLoopBackOff", 7)),
            pod("buffer", ("", 9)), pod("environment", ("ContainerCreating", 0))]
    assert crash_loops(pods) == {"learner": 7}  # a container running again is not looping now


def test_a_visit_before_the_watch_delivered_our_patch_computes_from_what_was_written():
    writes = StatusWrites()
    seen = {"metadata": {"namespace": "default", "name": "cartpole", "resourceVersion": "7"},
            "status": {"phase": "Pending", "envSteps": 0}}
    assert writes.latest(seen) == seen["status"]
    first = compute_status(exp(), seen["status"], Observation(generation=1, now=T0, ready=ALL_READY))
    writes.remember(seen, first)
    # Next visit, a second later, on the same stale version: nothing moves, so nothing is written.
    again = compute_status(exp(), writes.latest(seen), Observation(generation=1, now=T0 + timedelta(seconds=1),
                                                                   ready=ALL_READY))
    assert again == first
    # Without the memory the Ready condition would have moved to the later second.
    stale = compute_status(exp(), seen["status"], Observation(generation=1, now=T0 + timedelta(seconds=1),
                                                              ready=ALL_READY))
    assert conditions(stale)["Ready"]["lastTransitionTime"] != conditions(first)["Ready"]["lastTransitionTime"]
    # Once the watch has delivered a newer version, it is what counts.
    delivered = {"metadata": {**seen["metadata"], "resourceVersion": "8"}, "status": {**first, "envSteps": 5}}
    assert writes.latest(delivered)["envSteps"] == 5
    writes.forget(delivered)
    assert writes.latest(seen) == seen["status"]


def test_transitions_tell_each_phase_and_condition_change_once():
    first = compute_status(exp(), None, Observation(generation=1, now=T0))
    assert [(t.type, t.reason) for t in transitions(None, first)] == [("Normal", "PhasePending")]
    running = compute_status(exp(), first, Observation(generation=1, now=T0, ready=ALL_READY,
                                                       learner=LearnerView("TRAINING", 5, 100)))
    told = transitions(first, running)
    assert [(t.type, t.reason) for t in told] == [("Normal", "PhaseRunning"), ("Normal", "AllReplicasReady")]
    assert told[1].message.startswith("Ready is True: ready replicas:")
    assert transitions(running, running) == []
    looping = compute_status(exp(), running, Observation(generation=1, now=T0, ready={**ALL_READY, "learner": 0},
                                                         crash_loops={"learner": 10}))
    told = {t.reason: t for t in transitions(running, looping)}
    assert told["PhaseFailed"].type == "Warning" and told["CrashLoop"].type == "Warning"
    assert "learner crash-looped 10 times" in told["CrashLoop"].message
    assert told["ReplicasNotReady"].type == "Warning"
