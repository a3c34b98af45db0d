"""Roles as the operator runs them: started with --experiment (its ConfigMap's file), they train
without being told over gRPC, and follow changes to the file without a restart."""

from __future__ import annotations

import time

import grpc
import pytest
import yaml

from kuberl.local import LocalCluster
from kuberl.rpc import stub
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import learner_service_pb2 as learner_pb
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc

pytestmark = pytest.mark.slow


def manifest(samples_per_insert: float) -> str:
    return yaml.safe_dump({"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment",
                           "metadata": {"name": "clustered", "namespace": "default"},
                           "spec": {"environment": {"replicas": 1, "envsPerReplica": 4},
                                    "buffer": {"replicas": 2, "capacity": 20000},
                                    "learner": {"batchSize": 64, "samplesPerInsert": samples_per_insert,
                                                "learningStarts": 500},
                                    "stop": {"maxEnvSteps": 10_000_000, "targetReturn": 100_000}}})


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_roles_serve_their_experiment_file_and_follow_its_changes(tmp_path):
    experiment_file = tmp_path / "experiment.yaml"
    experiment_file.write_text(manifest(4))
    flags = ["--experiment", str(experiment_file)]
    with LocalCluster(tmp_path / "cluster", environment_replicas=1, buffer_replicas=2,
                      extra_args={"environment": flags, "buffer": flags, "learner": flags}) as cluster:
        learner = stub(learner_grpc.LearnerServiceStub, cluster.address("learner"))

        def stats():
            return learner.GetLearnerStats(learner_pb.GetLearnerStatsRequest(experiment_id="default/clustered"),
                                           timeout=5).stats

        wait_for(lambda: stats().updates > 100, 60, "the learner to train without a StartTraining call")
        for replica in cluster.replicas["buffer"]:
            shard = stub(buffer_grpc.BufferServiceStub, replica.address).GetStats(
                buffer_pb.GetStatsRequest(experiment_id="default/clustered"), timeout=5).stats
            assert shard.total_inserted > 0, "actors push to every shard the DNS-style list names"
        ratio_before = stats().updates * 64 / stats().env_steps
        assert ratio_before < 6, ratio_before  # samplesPerInsert 4 holds the learner back

        experiment_file.write_text(manifest(32))  # the ConfigMap changes: samplesPerInsert 4 -> 32
        learner_log, buffer_log = (tmp_path / "cluster" / "learner-0.log"), (tmp_path / "cluster" / "buffer-0.log")
        wait_for(lambda: "samples per insert 32" in learner_log.read_text(), 30, "the learner to take the change")
        wait_for(lambda: "experiment config changed" in buffer_log.read_text(), 30, "the shard to take the change")
        # The learner may now sample 32 rows per inserted one: it catches up at once (and the
        # shards hold the actors back meanwhile).
        wait_for(lambda: stats().updates * 64 / stats().env_steps > 16, 60, "training to follow the new ratio")

        experiment_file.write_text("spec: [not, a, mapping]")
        wait_for(lambda: "ignoring the new version" in learner_log.read_text(), 30, "a bad file to be ignored")
        assert stats().state == learner_pb.TRAINING_STATE_TRAINING
