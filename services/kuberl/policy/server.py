"""gRPC front of the policy role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from kuberl.config import from_proto
from kuberl.policy.core import Evaluation, PolicyStore, Result
from kuberl.prometheus import Metric, gauge
from kuberl.roles import DEFAULT_RESULT_RETENTION_SECONDS
from kuberl.rpc import NotFound, Server, require_experiment_id, rpc_errors
from kuberl.tensors import pack_weights, unpack_weights
from kuberl.v1 import common_pb2
from kuberl.v1 import policy_service_pb2 as pb
from kuberl.v1 import policy_service_pb2_grpc as pb_grpc


class PolicyMetrics:
    """The stored versions as Prometheus families."""

    def __init__(self, store: PolicyStore):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        versions = self.store.versions().items()
        yield gauge("kuberl_policy_version", "Newest version stored", ((e, v[0]) for e, v in versions))
        yield gauge("kuberl_policy_result_version", "Version kept as the result (-1: none evaluated yet)",
                    ((e, v[1]) for e, v in versions))
        expiries = ((e, self.store.expires_at(r)) for e, r in self.store.results().items())
        yield gauge("kuberl_policy_released_result_expiry_timestamp_seconds",
                    "When a released experiment's kept result will be forgotten (Unix time)",
                    ((e, at) for e, at in expiries if at is not None))


class PolicyServicer(pb_grpc.PolicyServiceServicer):
    def __init__(self, store: PolicyStore):
        self.store = store

    @rpc_errors
    def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.ServicerContext) -> pb.GetPolicyResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        if request.result:
            result = self.store.result(experiment_id, request.include_released)
            if result is None:
                raise NotFound(f"experiment {experiment_id!r} has no result (no version has been evaluated"
                               f"{'' if request.include_released else ', or it was released'})")
            reply = pb.GetPolicyResponse(updated=True, latest_version=result.version,
                                         weights=pack_weights(result.weights, result.version),
                                         evaluation=_evaluation(result), **self._release_times(result))
            if result.config:
                reply.config.ParseFromString(result.config)
            return reply
        latest, weights = self.store.newer_than(experiment_id, request.newer_than_version)
        if weights is None:
            return pb.GetPolicyResponse(updated=False, latest_version=latest)
        return pb.GetPolicyResponse(updated=True, latest_version=latest, weights=pack_weights(weights, latest))

    @rpc_errors
    def UpdatePolicy(self, request: pb.UpdatePolicyRequest, context: grpc.ServicerContext
                     ) -> pb.UpdatePolicyResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        weights = unpack_weights(request.weights)
        if request.HasField("result"):
            r = request.result
            if request.HasField("config"):
                from_proto(request.config)  # refused now (naming the field), not when someone exports it
            self.store.set_result(experiment_id, request.weights.version, weights,
                                  Evaluation(r.mean_return, r.episodes, r.env_steps),
                                  request.config.SerializeToString() if request.HasField("config") else b"")
            return pb.UpdatePolicyResponse(version=request.weights.version)
        version = self.store.update(experiment_id, request.weights.version, weights)
        return pb.UpdatePolicyResponse(version=version)


    @rpc_errors
    def ReleaseExperiment(self, request: common_pb2.ReleaseExperimentRequest, context: grpc.ServicerContext
                          ) -> common_pb2.ReleaseExperimentResponse:
        self.store.release(require_experiment_id(request.experiment_id), request.purge)
        return common_pb2.ReleaseExperimentResponse()

    @rpc_errors
    def ListResults(self, request: pb.ListResultsRequest, context: grpc.ServicerContext) -> pb.ListResultsResponse:
        held = []
        for experiment_id, result in sorted(self.store.results().items()):
            config = common_pb2.ExperimentConfig.FromString(result.config) if result.config else None
            held.append(pb.HeldResult(experiment_id=experiment_id, version=result.version,
                                      evaluation=_evaluation(result), env_id=config.env_id if config else "",
                                      **self._release_times(result)))
        return pb.ListResultsResponse(results=held)

    @rpc_errors
    def DeleteResult(self, request: pb.DeleteResultRequest, context: grpc.ServicerContext) -> pb.DeleteResultResponse:
        self.store.delete_result(require_experiment_id(request.experiment_id))
        return pb.DeleteResultResponse()

    def _release_times(self, result: Result) -> dict[str, float]:
        expires_at = self.store.expires_at(result)
        return {"released_at_seconds": result.released_at or 0.0, "expires_at_seconds": expires_at or 0.0}


def _evaluation(result: Result) -> pb.Evaluation:
    e = result.evaluation
    return pb.Evaluation(mean_return=e.mean_return, episodes=e.episodes, env_steps=e.env_steps)


def create_server(port: int, host: str = "127.0.0.1", data_dir: Path | None = None,
                  result_retention_seconds: float = DEFAULT_RESULT_RETENTION_SECONDS) -> tuple[Server, PolicyStore]:
    store = PolicyStore(data_dir, result_retention_seconds=result_retention_seconds)
    server = Server(PolicyServicer(store), pb_grpc.add_PolicyServiceServicer_to_server, pb.DESCRIPTOR, port, host)
    return server, store
