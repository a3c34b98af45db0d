"""Prioritized replay across shards over real processes: the learner's TD errors reach every shard."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from kuberl.config import ExperimentConfig, to_proto
from kuberl.local import LocalCluster, experiment_stub
from kuberl.rpc import stub
from kuberl.tensors import unpack_vector
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import experiment_service_pb2 as exp_pb
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def test_the_learner_sends_every_shard_the_priorities_of_its_rows(tmp_path):
    config = ExperimentConfig().replace(
        environment={"replicas": 1, "envs_per_replica": 4}, buffer={"replicas": 2, "prioritized": True},
        learner={"learning_starts": 500, "batch_size": 32, "samples_per_insert": 8}, stop={"max_env_steps": 10**7})
    with LocalCluster(tmp_path, environment_replicas=1, buffer_replicas=2) as cluster:
        api = experiment_stub(cluster)
        api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id="ranked", config=to_proto(config)), timeout=60)
        shards = [r.address for r in cluster.replicas["buffer"]]

        def stats() -> list[buffer_pb.ReplayStats]:
            try:
                return [stub(buffer_grpc.BufferServiceStub, a).GetStats(
                    buffer_pb.GetStatsRequest(experiment_id="ranked"), timeout=10).stats for a in shards]
            except grpc.RpcError as err:  # NOT_FOUND until the actor has opened the shard's table
                assert err.code() == grpc.StatusCode.NOT_FOUND, err
                return []

        def reprioritized() -> list[buffer_pb.ReplayStats] | None:
            # Every row starts at the largest priority seen; once TD errors come back the mass
            # departs from what equal priorities would give, on each shard.
            now = stats()
            return now if now and all(s.total_sampled > 0 and s.size > 100 and abs(s.priority_mass - s.size) > 0.05 * s.size
                              for s in now) else None

        wait_for(reprioritized, 90, "both shards' priority mass to move away from their size")
        # The shards now draw unevenly: the rows' probabilities are not all alike.
        reply = stub(buffer_grpc.BufferServiceStub, shards[0]).SampleBatch(
            buffer_pb.SampleBatchRequest(experiment_id="ranked", count=256), timeout=10)
        probabilities = unpack_vector(reply.probabilities, "probabilities", np.float32)
        assert len(unpack_vector(reply.keys, "keys", np.int64)) == len(probabilities) == 256
        assert probabilities.max() > 1.5 * probabilities.min()
        api.StopExperiment(exp_pb.StopExperimentRequest(experiment_id="ranked"), timeout=60)
