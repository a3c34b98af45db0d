"""A replay shard killed mid-run comes back with its transitions; the learner carries on meanwhile."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from kuberl.snapshots import snapshot_name
from kuberl.config import ExperimentConfig, to_proto
from kuberl.local import LocalCluster, experiment_stub
from kuberl.rpc import stub
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import experiment_service_pb2 as exp_pb
from kuberl.v1 import learner_service_pb2 as learner_pb
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc

pytestmark = pytest.mark.slow
EXPERIMENT = "restart"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except grpc.RpcError:  # not there yet (the experiment's table, a restarting replica)
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def shard_stats(cluster: LocalCluster, index: int) -> buffer_pb.ReplayStats:
    address = cluster.replicas["buffer"][index].address
    return stub(buffer_grpc.BufferServiceStub, address).GetStats(
        buffer_pb.GetStatsRequest(experiment_id=EXPERIMENT), timeout=5).stats


def learner_stats(cluster: LocalCluster) -> learner_pb.LearnerStats:
    return stub(learner_grpc.LearnerServiceStub, cluster.address("learner")).GetLearnerStats(
        learner_pb.GetLearnerStatsRequest(experiment_id=EXPERIMENT), timeout=5).stats


def test_killed_buffer_restores_its_snapshot_while_the_learner_keeps_training(tmp_path):
    config = ExperimentConfig().replace(
        seed=3, environment={"replicas": 1, "envs_per_replica": 4},
        buffer={"replicas": 2, "capacity": 50_000, "snapshot_interval_seconds": 0.5},
        learner={"batch_size": 64, "samples_per_insert": 8, "learning_starts": 500},
        stop={"target_return": 1e9, "max_env_steps": 10_000_000})
    with LocalCluster(tmp_path, environment_replicas=1, buffer_replicas=2) as cluster:
        experiment_stub(cluster).StartExperiment(
            exp_pb.StartExperimentRequest(experiment_id=EXPERIMENT, config=to_proto(config)), timeout=60)
        snapshot = tmp_path / "buffer-1" / snapshot_name(EXPERIMENT)
        wait_for(lambda: shard_stats(cluster, 1).size >= 3_000 and snapshot.exists(), 60, "a snapshot of shard 1")
        time.sleep(1.0)  # let a snapshot with more rows land

        cluster.kill("buffer", 1)  # SIGKILL: only what the last snapshot holds survives
        with np.load(snapshot, allow_pickle=False) as data:
            saved_rows = len(data["rewards"])
            saved_inserted = int(data["counters"][1])  # [capacity, inserted, sampled, next slot]
        assert saved_rows >= 3_000

        updates_at_kill = learner_stats(cluster).updates
        wait_for(lambda: learner_stats(cluster).updates > updates_at_kill + 200, 30,
                 "the learner to keep training on the surviving shard")
        assert learner_stats(cluster).state == learner_pb.TRAINING_STATE_TRAINING

        cluster.restart("buffer", 1)
        restored = shard_stats(cluster, 1)
        assert restored.size >= saved_rows
        assert restored.total_inserted >= saved_inserted
        assert "restored" in (tmp_path / "buffer-1.log").read_text()

        # The learner finds the shard again and samples from it; actors push to it again.
        sampled_before = restored.total_sampled
        wait_for(lambda: shard_stats(cluster, 1).total_sampled > sampled_before + 1_000, 30,
                 "the learner to sample from the restarted shard")
        wait_for(lambda: shard_stats(cluster, 1).total_inserted > restored.total_inserted, 30,
                 "actors to push to the restarted shard")

        status = experiment_stub(cluster).StopExperiment(
            exp_pb.StopExperimentRequest(experiment_id=EXPERIMENT), timeout=60).status
        assert status.phase == exp_pb.EXPERIMENT_PHASE_STOPPED
