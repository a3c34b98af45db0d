"""Cluster mode of the experiment API: experiments are RLExperiment objects. Start creates one
(the operator does the rest), Stop suspends it, status is read from what the operator wrote."""

from __future__ import annotations

import math
import os
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kuberl.config import API_GROUP, API_VERSION, KIND, ConfigError, ExperimentConfig, parse_manifest, to_spec
from kuberl.crd import PLURAL, VERSION
from kuberl.rpc import AlreadyExists, NotFound, Unavailable
from kuberl.v1 import experiment_service_pb2 as pb

PHASES = {"Pending": pb.EXPERIMENT_PHASE_PENDING, "Running": pb.EXPERIMENT_PHASE_RUNNING,
          "Succeeded": pb.EXPERIMENT_PHASE_SUCCEEDED, "Failed": pb.EXPERIMENT_PHASE_FAILED,
          "Suspended": pb.EXPERIMENT_PHASE_SUSPENDED}


def status_from_object(obj: dict[str, Any]) -> pb.ExperimentStatus:
    """An RLExperiment object (as the API server returns it) as the API's ExperimentStatus."""
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    environment = status.get("environment") or {}
    return pb.ExperimentStatus(
        experiment_id=meta.get("name", ""), phase=PHASES.get(status.get("phase", ""), pb.EXPERIMENT_PHASE_PENDING),
        message=status.get("message", ""), env_id=spec.get("envId", ""), env_steps=int(status.get("envSteps", 0)),
        episodes=int(status.get("episodes", 0)), mean_return=float(status.get("meanReturn", math.nan)),
        eval_return=float(status.get("evalReturn", math.nan)), policy_version=int(status.get("policyVersion", 0)),
        updates=int(status.get("updates", 0)),
        environment_replicas=[f"{meta.get('name', '')}-environment"] * int(environment.get("readyReplicas", 0)))


class ClusterExperiments:
    def __init__(self, namespace: str):
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        self.namespace = namespace
        self.api = client.CustomObjectsApi()

    def _call(self, what: str, experiment_id: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(API_GROUP, VERSION, self.namespace, PLURAL, *args)
        except ApiException as err:
            if err.status == 404:
                raise NotFound(f"no experiment {experiment_id!r} in namespace {self.namespace}") from None
            if err.status == 409:
                raise AlreadyExists(f"experiment_id: {experiment_id!r} already exists") from None
            if err.status in (400, 422):
                raise ValueError(f"the API server refused {what}: {err.reason}: {err.body}") from None
            raise Unavailable(f"the Kubernetes API answered {err.status} to {what}") from None

    def start_experiment(self, experiment_id: str, cfg: ExperimentConfig) -> tuple[str, list[str]]:
        body = {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": experiment_id, "namespace": self.namespace}, "spec": to_spec(cfg)}
        try:
            parse_manifest(body)  # names must be DNS labels here: refuse before the API server does
        except ConfigError as err:
            raise ValueError(f"experiment_id: {err.problem}" if err.path == "metadata.name" else str(err)) from None
        self._call("the new experiment", experiment_id, self.api.create_namespaced_custom_object, body)
        return experiment_id, []

    def stop_experiment(self, experiment_id: str) -> pb.ExperimentStatus:
        obj = self._call("the suspension", experiment_id, self.api.patch_namespaced_custom_object, experiment_id,
                         {"spec": {"suspend": True}})
        return status_from_object(obj)

    def experiment_status(self, experiment_id: str) -> pb.ExperimentStatus:
        return status_from_object(self._call("the read", experiment_id, self.api.get_namespaced_custom_object,
                                             experiment_id))

    def list_statuses(self) -> list[pb.ExperimentStatus]:
        listing = self._call("the listing", "", self.api.list_namespaced_custom_object)
        return [status_from_object(obj) for obj in listing.get("items", [])]

    def close(self) -> None:
        """Nothing to stop: the experiments live on in the cluster."""
