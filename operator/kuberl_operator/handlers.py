"""kopf handlers: thin. One level-based reconcile serves resume, create and spec updates; an
observer loop visits every experiment each `KUBERL_OPERATOR_TIMER_SECONDS`, writes its status
when it changed, and re-applies its children (a deleted child comes back; a finished run scales
its actors down; `ttlSecondsAfterFinished` deletes it).

The loop is not a `@kopf.timer`: kopf puts a finalizer on every object a timer or daemon
watches, so with the operator uninstalled or down no RLExperiment (nor its namespace) could be
deleted. Nothing here needs a finalizer: children go with their owner references.

Run: kopf run -m kuberl_operator.handlers --all-namespaces --liveness=http://0.0.0.0:8080/healthz
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import kopf

from kuberl.config import API_GROUP, ConfigError, scoped_experiment_id
from kuberl.crd import PLURAL, VERSION
from kuberl.kubeconfig import load_kube_config
from kuberl.lifecycle import Phase, invalid_spec_status, is_finished, parse_time, recorded_phase, transitions
from kuberl.pki import load_authority
from kuberl.prometheus import serve_metrics
from kuberl.release import release_everywhere
from kuberl.rpc import use_tls
from kuberl.security import PER_EXPERIMENT_ROLES, Identity, TlsFiles, identity_pem
from kuberl_operator import kube
from kuberl_operator.builders import (WORKLOAD_KINDS, Experiment, Settings, build_certificate_secret,
                                      certificate_secret_name, desired_children, experiment_selector, owned_by,
                                      plan_children)
from kuberl_operator.certificates import reissue_reason
from kuberl_operator.metrics import RECONCILES, VISIT_SECONDS, VISITS, count_phases
from kuberl_operator.observe import observe
from kuberl_operator.status import StatusWrites, cluster_status

SETTINGS = Settings.from_environ()
# The CA that signs each experiment's certificates (only the operator mounts its key).
AUTHORITY = (load_authority(Path(SETTINGS.ca_dir) / "tls.crt", Path(SETTINGS.ca_dir) / "tls.key")
             if SETTINGS.child_tls else None)
TIMER_SECONDS = SETTINGS.observation_seconds
# Experiments observed at once: each visit may wait on its learner and on analytics.
PARALLEL_VISITS = 8
RELEASE_TIMEOUT = 5.0
CHILD_KINDS = ("ConfigMap", "Service", *WORKLOAD_KINDS, *(("NetworkPolicy",) if SETTINGS.network_policies else ()))
log = logging.getLogger(__name__)
# (experiment uid, problem) already reported: one event each, not one every visit.
_REPORTED: set[tuple[str, str]] = set()
_WRITTEN = StatusWrites()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, experiments: kopf.Index, memo: kopf.Memo, **_: Any) -> None:
    # No handler needs a finalizer; naming kopf's lets it remove one an older operator left.
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration")
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.posting.level = logging.WARNING
    load_kube_config()
    if os.environ.get("KUBERL_TLS_DIR"):  # the operator's own identity, for status and releases
        use_tls(TlsFiles(Path(os.environ["KUBERL_TLS_DIR"])))
    if os.environ.get("KUBERL_METRICS_PORT"):  # the same port its children serve theirs on
        serve_metrics(int(os.environ["KUBERL_METRICS_PORT"]), "0.0.0.0")
    memo.stopping = asyncio.Event()
    memo.observer = asyncio.create_task(_observe_forever(experiments, memo.stopping))


@kopf.on.cleanup()
async def stop_observer(memo: kopf.Memo, **_: Any) -> None:
    # Not cancel(): a visit runs in a thread that cancelling would not stop, and a stopped
    # operator must write nothing more. The round in progress finishes first.
    memo.stopping.set()
    await memo.observer


@kopf.index(API_GROUP, VERSION, PLURAL)
def experiments(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest version of every RLExperiment, as the watch delivers it: what the loop visits."""
    return {(namespace, name): {"metadata": dict(body.metadata), "spec": dict(body.spec),
                                "status": dict(body.status)}}


def _list_children(exp: Experiment) -> list[dict[str, Any]]:
    return [obj for kind in CHILD_KINDS for obj in kube.list_labelled(kind, exp.namespace, experiment_selector(exp))]


def _reference(body: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{API_GROUP}/{VERSION}", "kind": "RLExperiment", "metadata": body["metadata"]}


def _ensure_certificates(exp: Experiment, owner: dict[str, Any], uid: str) -> list[str]:
    """Issues each per-experiment role's Secret that is missing, expiring or from another CA;
    returns the names held by objects that are not this experiment's (left alone)."""
    assert AUTHORITY is not None
    live = {s["metadata"]["name"]: s for s in kube.list_labelled("Secret", exp.namespace, experiment_selector(exp))}
    taken = []
    for role in PER_EXPERIMENT_ROLES:
        current = live.get(certificate_secret_name(exp, role))
        if current is not None and not owned_by(current, uid):
            taken.append(f"Secret {certificate_secret_name(exp, role)} exists and is not this experiment's")
            continue
        why = reissue_reason(current, AUTHORITY.certificate, datetime.now(timezone.utc))
        if why is None:
            continue
        secret = build_certificate_secret(exp, role, SETTINGS,
                                          identity_pem(AUTHORITY, Identity(role, exp.experiment_id)))
        kopf.adopt(secret, owner=owner)
        try:
            if current is None:
                kube.create(secret, owner_uid=uid)
            else:
                kube.server_side_apply(secret)
        except kube.AlreadyTaken as err:
            taken.append(str(err))
            continue
        log.info("%s: %s's certificate issued (%s)", exp.experiment_id, role, why)
    return taken


def _apply_children(exp: Experiment, phase: Phase, body: dict[str, Any], live: list[dict[str, Any]]) -> None:
    """Creates what is missing, re-applies what changed, and leaves alone what is right or not
    ours (an event says which)."""
    desired = desired_children(exp, SETTINGS, phase)
    owner = _reference(body)
    for child in desired:
        # Not forced=True: that would rename every child after its owner; ours have names of their own.
        kopf.adopt(child, owner=owner, nested="spec.template")
    uid = body["metadata"]["uid"]
    plan = plan_children(desired, live, uid)
    taken = list(plan.taken) + (_ensure_certificates(exp, owner, uid) if SETTINGS.child_tls else [])
    for child in plan.create:
        try:
            kube.create(child, owner_uid=uid)
        except kube.AlreadyTaken as err:
            taken.append(str(err))
    for child in plan.apply:
        kube.server_side_apply(child)
    for child in plan.delete:
        kube.delete(child)
    for problem in taken:
        if (uid, problem) not in _REPORTED:
            _REPORTED.add((uid, problem))
            kube.post_event(body, "Warning", "ChildNameTaken", problem)


@kopf.on.resume(API_GROUP, VERSION, PLURAL)
@kopf.on.create(API_GROUP, VERSION, PLURAL)
@kopf.on.update(API_GROUP, VERSION, PLURAL, field="spec")
def reconcile(name: str, namespace: str, spec: kopf.Spec, status: kopf.Status, body: kopf.Body, **_: Any) -> None:
    try:
        exp = Experiment.from_body(name, namespace, dict(spec), body.metadata.uid)
    except ConfigError as err:
        RECONCILES.labels("invalid_spec").inc()
        kopf.warn(body, reason="InvalidSpec", message=str(err))
        raise kopf.PermanentError(f"invalid spec: {err}") from None
    # Before any observation, the phase is the one last recorded: a finished run stays scaled down.
    _apply_children(exp, recorded_phase(dict(status or {})), {"metadata": dict(body.metadata)}, _list_children(exp))
    RECONCILES.labels("applied").inc()


def visit(body: dict[str, Any], now: datetime) -> None:
    """One observation of one experiment: status, children, TTL."""
    meta, spec, status = body["metadata"], body["spec"], _WRITTEN.latest(body)
    name, namespace = meta["name"], meta["namespace"]
    if meta.get("deletionTimestamp"):
        _WRITTEN.forget(body)
        return
    generation = int(meta.get("generation") or 0)
    try:
        exp = Experiment.from_body(name, namespace, spec, meta.get("uid", ""))
    except ConfigError as err:
        new_status = invalid_spec_status(status, generation, now, f"invalid spec: {err}")
    else:
        live = _list_children(exp)
        pods = kube.list_labelled("Pod", namespace, experiment_selector(exp))
        new_status = cluster_status(exp, status, observe(exp, generation, now, SETTINGS,
                                                         [c for c in live if c["kind"] in WORKLOAD_KINDS], pods))
        _apply_children(exp, Phase(new_status["phase"]), body, live)
    if any(status.get(key) != value for key, value in new_status.items()):
        kube.patch_experiment_status(namespace, name, new_status)
        _WRITTEN.remember(body, new_status)
        for told in transitions(status, new_status):  # `kubectl describe rlx` tells the story
            kube.post_event(body, told.type, told.reason, told.message)
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is not None and is_finished(new_status):
        if now >= parse_time(new_status["completionTime"]) + timedelta(seconds=ttl):
            kube.post_event(body, "Normal", "TTLExpired", f"deleted {ttl}s after it finished ({new_status['phase']})")
            kube.delete_experiment(namespace, name)


async def _visit_logged(body: dict[str, Any], gate: asyncio.Semaphore) -> None:
    async with gate:
        try:
            with VISIT_SECONDS.time():
                await asyncio.to_thread(visit, body, datetime.now(timezone.utc))
            VISITS.labels("ok").inc()
        except Exception:  # one experiment's trouble must not stop the others' observation
            VISITS.labels("error").inc()
            log.exception("observing %s/%s failed; retrying in %.0fs", body["metadata"]["namespace"],
                          body["metadata"]["name"], TIMER_SECONDS)


def release_shared_state(metadata: dict[str, Any]) -> None:
    """An RLExperiment is gone (or re-created under a new uid): its pods went with it, but the
    shared policy and analytics roles still hold its weights and metrics. Best effort and
    without a finalizer: an experiment deleted while no operator runs keeps them (under an id
    no later experiment shares)."""
    experiment_id = scoped_experiment_id(metadata["namespace"], metadata["name"], metadata.get("uid", ""))
    unreachable = release_everywhere(experiment_id, RELEASE_TIMEOUT, policy=SETTINGS.policy_address,
                                     analytics=SETTINGS.analytics_address)
    if unreachable:
        log.warning("%s deleted; its state in %s is left behind", experiment_id, ", ".join(unreachable))
    else:
        log.info("%s deleted; its weights and metrics released", experiment_id)


def gone(before: dict[tuple[str, str], dict[str, Any]], now: dict[tuple[str, str], dict[str, Any]]
         ) -> list[dict[str, Any]]:
    """The metadata of experiments seen last round and not this one (a re-created name has a new uid)."""
    return [meta for key, meta in before.items() if key not in now or now[key].get("uid") != meta.get("uid")]


async def _observe_forever(index: kopf.Index, stopping: asyncio.Event) -> None:
    gate = asyncio.Semaphore(PARALLEL_VISITS)
    pause = min(1.0, TIMER_SECONDS)
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    while not await _stopped_within(stopping, pause):
        started = asyncio.get_running_loop().time()
        bodies = [body for key in list(index) for body in index.get(key, [])]
        current = {(b["metadata"]["namespace"], b["metadata"]["name"]): b["metadata"] for b in bodies}
        deleted, seen = gone(seen, current), current
        count_phases(bodies)
        await asyncio.gather(*(_visit_logged(body, gate) for body in bodies),
                             *(asyncio.to_thread(release_shared_state, meta) for meta in deleted))
        pause = max(0.0, TIMER_SECONDS - (asyncio.get_running_loop().time() - started))


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
