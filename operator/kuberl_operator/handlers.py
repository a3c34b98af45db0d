"""kopf handlers: thin. One level-based reconcile serves resume, create and spec updates; a
timer observes the children, the learner and analytics, writes status when it changed, and
re-applies the children (a deleted child comes back; a finished run scales its actors down).

Run: kopf run -m kuberl_operator.handlers --all-namespaces --liveness=http://0.0.0.0:8080/healthz
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import kopf

from kuberl.config import API_GROUP, ConfigError
from kuberl.crd import PLURAL, VERSION
from kuberl_operator import kube
from kuberl_operator.builders import Experiment, Settings, desired_children
from kuberl_operator.observe import observe
from kuberl_operator.status import compute_status, invalid_spec_status, is_finished

SETTINGS = Settings.from_environ()
# How often status is observed and children re-applied (tests set it lower).
TIMER_SECONDS = float(os.environ.get("KUBERL_OPERATOR_TIMER_SECONDS", "5"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration")
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.posting.level = logging.WARNING
    kube.load_config()


def _apply_children(exp: Experiment, body: Any) -> None:
    for child in desired_children(exp, SETTINGS):
        kube.apply(child, owner=body)


def _patch_status_if_changed(status: kopf.Status, new_status: dict[str, Any], patch: kopf.Patch) -> None:
    if any(dict(status).get(key) != value for key, value in new_status.items()):
        patch.status.update(new_status)


@kopf.on.resume(API_GROUP, VERSION, PLURAL)
@kopf.on.create(API_GROUP, VERSION, PLURAL)
@kopf.on.update(API_GROUP, VERSION, PLURAL, field="spec")
def reconcile(name: str, namespace: str, spec: kopf.Spec, status: kopf.Status, body: kopf.Body, **_: Any) -> None:
    try:
        exp = Experiment.from_body(name, namespace, dict(spec), dict(status or {}))
    except ConfigError as err:
        kopf.warn(body, reason="InvalidSpec", message=str(err))
        raise kopf.PermanentError(f"invalid spec: {err}") from None
    _apply_children(exp, body)


@kopf.timer(API_GROUP, VERSION, PLURAL, interval=TIMER_SECONDS, initial_delay=min(1.0, TIMER_SECONDS),
            backoff=TIMER_SECONDS)
def keep_status(name: str, namespace: str, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta,
                body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    now = datetime.now(timezone.utc)
    generation = int(meta.get("generation") or 0)
    try:
        exp = Experiment.from_body(name, namespace, dict(spec), dict(status or {}))
    except ConfigError as err:
        _patch_status_if_changed(status, invalid_spec_status(dict(status), generation, now, f"invalid spec: {err}"),
                                 patch)
        return
    new_status = compute_status(exp, dict(status), observe(exp, generation, now, SETTINGS))
    _apply_children(dataclasses.replace(exp, phase=new_status["phase"]), body)
    _patch_status_if_changed(status, new_status, patch)
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is not None and is_finished(new_status) and not meta.get("deletionTimestamp"):
        finished_at = datetime.strptime(new_status["completionTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        if now >= finished_at + timedelta(seconds=ttl):
            # Not from inside this handler: kopf stops an object's timers before it lets the
            # object go, and a timer that deletes its own object mid-run can wait on itself.
            threading.Thread(target=kube.delete_experiment, args=(namespace, name), daemon=True).start()

