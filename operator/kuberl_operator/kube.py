"""Applying desired objects with the Kubernetes client: create if absent, patch if different,
leave alone if already right (so a restarted operator changes nothing)."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kuberl.config import API_GROUP
from kuberl.crd import PLURAL, VERSION

log = logging.getLogger(__name__)
MERGE_PATCH = "application/merge-patch+json"
# No call to the API server may hang a handler forever (the client's default): (connect, read).
TIMEOUT = (5, 20)


_SERIALIZER = client.ApiClient()  # only turns model objects into dicts; it sends nothing


def load_config() -> None:
    """In a pod: its service account; elsewhere: KUBECONFIG (tests, `kopf run` on a laptop)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def _api(kind: str) -> tuple[Any, str]:
    """The client API object and the snake_case kind its methods are named after."""
    if kind == "Deployment":
        return client.AppsV1Api(), "deployment"
    return client.CoreV1Api(), {"ConfigMap": "config_map", "Service": "service"}[kind]


def is_subset(desired: Any, live: Any) -> bool:
    """True when every value in desired is in live: the server adds defaults we did not ask for."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    return desired == live


def apply(obj: dict[str, Any], owner: dict[str, Any]) -> str:
    """Creates or patches one child owned by `owner`; returns "created", "patched" or "unchanged"."""
    # Not forced=True: that would rename every child after its owner; ours have names of their own.
    kopf.adopt(obj, owner=owner, nested="spec.template")
    api, kind = _api(obj["kind"])
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    try:
        live = getattr(api, f"read_namespaced_{kind}")(name, namespace, _request_timeout=TIMEOUT)
    except ApiException as err:
        if err.status != 404:
            raise
        try:
            getattr(api, f"create_namespaced_{kind}")(namespace, obj, _request_timeout=TIMEOUT)
        except ApiException as conflict:
            if conflict.status != 409:
                raise
            # The reconcile handler and the timer may apply at once: the other one created it.
            live = getattr(api, f"read_namespaced_{kind}")(name, namespace, _request_timeout=TIMEOUT)
        else:
            log.info("created %s %s/%s", obj["kind"], namespace, name)
            return "created"
    live_dict = _SERIALIZER.sanitize_for_serialization(live)
    wanted = {key: obj[key] for key in ("metadata", "spec", "data") if key in obj}
    wanted["metadata"] = {k: v for k, v in obj["metadata"].items() if k in ("labels", "annotations")}
    if is_subset(wanted, live_dict):
        return "unchanged"
    getattr(api, f"patch_namespaced_{kind}")(name, namespace, wanted, _content_type=MERGE_PATCH,
                                             _request_timeout=TIMEOUT)
    log.info("patched %s %s/%s", obj["kind"], namespace, name)
    return "patched"


def ready_replicas(namespace: str, name: str) -> int | None:
    """A Deployment's ready replicas; None when it does not exist."""
    try:
        deployment = client.AppsV1Api().read_namespaced_deployment(name, namespace, _request_timeout=TIMEOUT)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return (deployment.status.ready_replicas if deployment.status else None) or 0


def crash_loops(namespace: str, selector: str) -> int:
    """The most restarts of any container that is now in CrashLoopBackOff among the pods the
    selector picks; 0 when none is crash-looping."""
    pods = client.CoreV1Api().list_namespaced_pod(namespace, label_selector=selector, _request_timeout=TIMEOUT)
    worst = 0
    for pod in pods.items:
        for container in (pod.status.container_statuses if pod.status else None) or []:
            waiting = container.state.waiting if container.state else None
            if waiting is not None and waiting.reason == "CrashLoopBackOff":
                worst = max(worst, container.restart_count or 0)
    return worst


def delete_experiment(namespace: str, name: str) -> None:
    """Deletes the RLExperiment; its children go with it through their owner references."""
    try:
        client.CustomObjectsApi().delete_namespaced_custom_object(API_GROUP, VERSION, namespace, PLURAL, name,
                                                                  _request_timeout=TIMEOUT)
    except ApiException as err:
        if err.status != 404:
            raise
