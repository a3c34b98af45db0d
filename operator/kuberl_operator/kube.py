"""The operator's calls to the API server, and nothing else: list an experiment's children and
pods (server-side label selectors), create a missing child, server-side apply a changed one,
delete one no longer desired.

Each call has a timeout: no call may hang a handler forever (the client's default)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kuberl.config import API_GROUP
from kuberl.crd import PLURAL, VERSION

log = logging.getLogger(__name__)
FIELD_MANAGER = "kuberl-operator"
APPLY_PATCH = "application/apply-patch+yaml"
TIMEOUT = (5, 20)  # (connect, read) seconds
_SERIALIZER = client.ApiClient()  # only turns model objects into dicts; it sends nothing


class AlreadyTaken(Exception):
    """A child's name is held by an object this experiment does not own."""


def _api(kind: str) -> tuple[Any, str]:
    """The client API object and the snake_case kind its methods are named after."""
    if kind in ("Deployment", "StatefulSet"):
        return client.AppsV1Api(), {"Deployment": "deployment", "StatefulSet": "stateful_set"}[kind]
    if kind == "NetworkPolicy":
        return client.NetworkingV1Api(), "network_policy"
    return client.CoreV1Api(), {"ConfigMap": "config_map", "Service": "service", "Pod": "pod", "Secret": "secret"}[kind]


def list_labelled(kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
    api, snake = _api(kind)
    listed = getattr(api, f"list_namespaced_{snake}")(namespace, label_selector=selector, _request_timeout=TIMEOUT)
    items = _SERIALIZER.sanitize_for_serialization(listed)["items"]
    for item in items:  # lists leave kind out of their items
        item["kind"] = kind
    return items


def create(obj: dict[str, Any], owner_uid: str) -> None:
    """Creates a child. If its name is in use, that is fine when the object is ours (the
    reconcile handler and the observer may create at once), AlreadyTaken when it is not."""
    api, snake = _api(obj["kind"])
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    try:
        getattr(api, f"create_namespaced_{snake}")(namespace, obj, field_manager=FIELD_MANAGER,
                                                   _request_timeout=TIMEOUT)
    except ApiException as err:
        if err.status != 409:
            raise
        live = getattr(api, f"read_namespaced_{snake}")(name, namespace, _request_timeout=TIMEOUT)
        if owner_uid not in {ref.uid for ref in live.metadata.owner_references or []}:
            raise AlreadyTaken(f"{obj['kind']} {name} already exists and is not this experiment's") from None
        return
    log.info("created %s %s/%s", obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])


def server_side_apply(obj: dict[str, Any]) -> None:
    """Makes the fields we manage what `obj` says; the API server does the diff."""
    api, snake = _api(obj["kind"])
    getattr(api, f"patch_namespaced_{snake}")(obj["metadata"]["name"], obj["metadata"]["namespace"], obj,
                                              field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH,
                                              _request_timeout=TIMEOUT)
    log.info("applied %s %s/%s", obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])


def delete(obj: dict[str, Any]) -> None:
    """Deletes a child of ours that is no longer desired (gone already is fine)."""
    api, snake = _api(obj["kind"])
    try:
        getattr(api, f"delete_namespaced_{snake}")(obj["metadata"]["name"], obj["metadata"]["namespace"],
                                                   _request_timeout=TIMEOUT)
    except ApiException as err:
        if err.status != 404:
            raise
    log.info("deleted %s %s/%s", obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])


def patch_experiment_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi().patch_namespaced_custom_object_status(
        API_GROUP, VERSION, namespace, PLURAL, name, {"status": status}, _content_type="application/merge-patch+json",
        _request_timeout=TIMEOUT)


def delete_experiment(namespace: str, name: str) -> None:
    """Deletes the RLExperiment; its children go with it through their owner references."""
    try:
        client.CustomObjectsApi().delete_namespaced_custom_object(API_GROUP, VERSION, namespace, PLURAL, name,
                                                                  _request_timeout=TIMEOUT)
    except ApiException as err:
        if err.status != 404:
            raise


def post_event(involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event about an RLExperiment (what `kubectl describe rlx` lists). Posted directly:
    kopf's own posting works only inside its handlers, and the observer loop is not one."""
    meta = involved["metadata"]
    now = datetime.now(timezone.utc)
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
             "involvedObject": {"apiVersion": f"{API_GROUP}/{VERSION}", "kind": "RLExperiment", "name": meta["name"],
                                "namespace": meta["namespace"], "uid": meta.get("uid"),
                                "resourceVersion": meta.get("resourceVersion")},
             "type": type_, "reason": reason, "message": message[:1024], "count": 1,
             "firstTimestamp": now, "lastTimestamp": now,
             "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER}
    try:
        client.CoreV1Api().create_namespaced_event(meta["namespace"], event, _request_timeout=TIMEOUT)
    except ApiException as err:  # an event lost is not worth a failed observation
        log.warning("event %s on %s/%s not posted: %s", reason, meta["namespace"], meta["name"], err.status)
