"""Cluster mode of the experiment API: experiments are RLExperiment objects. Start creates one
(the operator does the rest), Stop sets its `spec.stopped` (as `kubectl patch` would), status
is read from what the operator wrote."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kuberl.config import API_GROUP, API_VERSION, KIND, ConfigError, ExperimentConfig, parse_manifest, to_spec
from kuberl.crd import PLURAL, VERSION
from kuberl.kubeconfig import load_kube_config
from kuberl.lifecycle import parse_time
from kuberl.rpc import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from kuberl.experiment.server import status_to_proto
from kuberl.v1 import experiment_service_pb2 as pb

def _elapsed(status: dict[str, Any]) -> float:
    if not status.get("startTime"):
        return 0.0
    end = parse_time(status["completionTime"]) if status.get("completionTime") else datetime.now(timezone.utc)
    return max(0.0, (end - parse_time(status["startTime"])).total_seconds())


def status_from_object(obj: dict[str, Any]) -> pb.ExperimentStatus:
    """An RLExperiment object (as the API server returns it) as the API's ExperimentStatus."""
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    ready = int((status.get("environment") or {}).get("readyReplicas", 0))
    return status_to_proto(meta.get("name", ""), spec.get("envId", ""), status, _elapsed(status),
                           [f"{meta.get('name', '')}-environment"] * ready)


class ClusterExperiments:
    def __init__(self, namespace: str):
        load_kube_config()
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
        obj = self._call("the stop", experiment_id, self.api.patch_namespaced_custom_object, experiment_id,
                         {"spec": {"stopped": True}})
        return status_from_object(obj)

    def experiment_status(self, experiment_id: str) -> pb.ExperimentStatus:
        return status_from_object(self._call("the read", experiment_id, self.api.get_namespaced_custom_object,
                                             experiment_id))

    def delete_experiment(self, experiment_id: str) -> None:
        raise FailedPrecondition(f"in a cluster an experiment is deleted with `kubectl delete rlx {experiment_id} "
                                 f"-n {self.namespace}` (its children and state go with it); Stop ends it and keeps "
                                 "its results")

    def list_statuses(self) -> list[pb.ExperimentStatus]:
        listing = self._call("the listing", "", self.api.list_namespaced_custom_object)
        return [status_from_object(obj) for obj in listing.get("items", [])]

    def close(self) -> None:
        """Nothing to stop: the experiments live on in the cluster."""
