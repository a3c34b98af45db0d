"""A tiny kopf operator that proves the kmock harness (run by tests/operator/test_harness.py).

For every RLExperiment it keeps a ConfigMap ``<name>-env`` (owned by the experiment) holding
``spec.environment``; it reports progress in the status subresource, and a timer writes
``status.observedGeneration``. It talks to the API like a real operator: the official
``kubernetes`` client from ``load_config()`` for its own objects, kopf for the CR itself.
"""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "kuberl.dev", "v1alpha1", "rlexperiments"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # In-cluster config when deployed, KUBECONFIG (here: the emulator) otherwise.
    kubernetes.config.load_config()
    settings.watching.connect_timeout = 5
    settings.networking.request_timeout = 10


def configmap_name(experiment_name: str) -> str:
    return f"{experiment_name}-env"


def configmap_for(body: kopf.Body) -> dict[str, Any]:
    environment = dict(body.spec.get("environment", {}))
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(body.metadata.name),
            "labels": {"kuberl.dev/experiment": body.metadata.name},
        },
        "data": {
            "environment": str(environment.get("name", "")),
            "replicas": str(environment.get("replicas", 1)),
        },
    }
    kopf.adopt(cm, owner=body)  # ownerReferences (needs the owner's uid) and the namespace
    return cm


def ensure_configmap(body: kopf.Body, logger: Any) -> bool:
    """Create the ConfigMap if it is missing; True if it had to be created."""
    api = kubernetes.client.CoreV1Api()
    namespace = body.metadata.namespace
    try:
        api.read_namespaced_config_map(configmap_name(body.metadata.name), namespace)
        return False
    except kubernetes.client.ApiException as e:
        if e.status != 404:
            raise
    try:
        api.create_namespaced_config_map(namespace, configmap_for(body))
    except kubernetes.client.ApiException as e:
        if e.status != 409:  # created meanwhile: fine
            raise
    logger.info("ConfigMap %s created", configmap_name(body.metadata.name))
    return True


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_fn(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    ensure_configmap(body, logger)
    kopf.info(body, reason="Configured", message=f"ConfigMap {configmap_name(body.metadata.name)} ready")
    patch.status["phase"] = "Configured"
    patch.status["configMap"] = configmap_name(body.metadata.name)


@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_fn(body: kopf.Body, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    # Any change of the experiment (a spec edit, an annotation "touch") re-checks the ConfigMap.
    if ensure_configmap(body, logger):
        patch.status["recreations"] = int(body.status.get("recreations", 0)) + 1


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.environment.replicas")
def replicas_fn(body: kopf.Body, new: Any, patch: kopf.Patch, logger: Any, **_: Any) -> None:
    kubernetes.client.CoreV1Api().patch_namespaced_config_map(
        configmap_name(body.metadata.name), body.metadata.namespace, {"data": {"replicas": str(new)}}
    )
    patch.status["replicas"] = new
    logger.info("replicas -> %s", new)


@kopf.timer(GROUP, VERSION, PLURAL, interval=0.3)
def observe_generation(meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    if status.get("observedGeneration") != meta.get("generation"):
        patch.status["observedGeneration"] = meta.get("generation")
