"""gRPC front of the policy role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from kuberl.policy.core import Evaluation, PolicyStore
from kuberl.prometheus import Metric, gauge
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


class PolicyServicer(pb_grpc.PolicyServiceServicer):
    def __init__(self, store: PolicyStore):
        self.store = store

    @rpc_errors
    def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.ServicerContext) -> pb.GetPolicyResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        if request.result:
            result = self.store.result(experiment_id)
            if result is None:
                raise NotFound(f"experiment {experiment_id!r} has no result yet (no version has been evaluated)")
            e = result.evaluation
            return pb.GetPolicyResponse(updated=True, latest_version=result.version,
                                        weights=pack_weights(result.weights, result.version),
                                        evaluation=pb.Evaluation(mean_return=e.mean_return, episodes=e.episodes,
                                                                 env_steps=e.env_steps))
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
            self.store.set_result(experiment_id, request.weights.version, weights,
                                  Evaluation(r.mean_return, r.episodes, r.env_steps))
            return pb.UpdatePolicyResponse(version=request.weights.version)
        version = self.store.update(experiment_id, request.weights.version, weights)
        return pb.UpdatePolicyResponse(version=version)


    @rpc_errors
    def ReleaseExperiment(self, request: common_pb2.ReleaseExperimentRequest, context: grpc.ServicerContext
                          ) -> common_pb2.ReleaseExperimentResponse:
        self.store.release(require_experiment_id(request.experiment_id))
        return common_pb2.ReleaseExperimentResponse()


def create_server(port: int, host: str = "127.0.0.1", data_dir: Path | None = None) -> tuple[Server, PolicyStore]:
    store = PolicyStore(data_dir)
    server = Server(PolicyServicer(store), pb_grpc.add_PolicyServiceServicer_to_server, pb.DESCRIPTOR, port, host)
    return server, store
