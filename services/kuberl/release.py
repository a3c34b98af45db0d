"""Delete's other half: every role that holds state for an experiment is asked to release it
(ReleaseExperiment). Used by the experiment API's Delete in pool mode and by the operator
when an RLExperiment is gone (its own pods went with it; the shared roles still hold its
weights and metrics)."""

from __future__ import annotations

import grpc

from kuberl.rpc import stub
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import common_pb2
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc


def release_everywhere(experiment_id: str, timeout: float, *, learner: str | None = None, shards: list[str] = (),
                       policy: str | None = None, analytics: str | None = None, purge: bool = False) -> list[str]:
    """Asks each named role to release the experiment (with `purge`, also what a release keeps:
    the result and the metrics); returns the ones that could not be reached ("address: CODE").
    Analytics goes last: the others' final metrics are on their way."""
    holders = [(learner_grpc.LearnerServiceStub, learner), (policy_grpc.PolicyServiceStub, policy),
               *((buffer_grpc.BufferServiceStub, shard) for shard in shards),
               (analytics_grpc.AnalyticsServiceStub, analytics)]
    request = common_pb2.ReleaseExperimentRequest(experiment_id=experiment_id, purge=purge)
    unreachable = []
    for stub_class, address in holders:
        if not address:
            continue
        try:
            stub(stub_class, address).ReleaseExperiment(request, timeout=timeout)
        except grpc.RpcError as err:
            unreachable.append(f"{address}: {err.code().name}")
    return unreachable
