"""Corrupt, truncated, empty, foreign and newer-format files in every role's data directory: each
role process starts, serves, and restores the good experiments' data; the bad files are kept
aside. A metrics database that is not one is moved aside and a new one started."""

from __future__ import annotations

import numpy as np
import pytest

from kuberl.analytics.core import Point, SQLiteStore
from kuberl.buffer.core import Shard
from kuberl.config import ExperimentConfig
from kuberl.local import LocalCluster
from kuberl.policy.core import PolicyStore
from kuberl.rpc import stub
from kuberl.snapshots import snapshot_name
from kuberl.v1 import analytics_service_pb2 as analytics_pb
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import policy_service_pb2 as policy_pb
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc
from tests.unit.test_shard import batch, damage

pytestmark = pytest.mark.slow
GOOD = "team/good"


def test_every_role_starts_on_damaged_files_and_restores_the_good_data(tmp_path):
    shard = Shard(tmp_path / "buffer-0")
    shard.open(GOOD, ExperimentConfig())
    shard.push(GOOD, batch(11))
    shard.snapshot_due(force=True)
    buffer_aside = damage(tmp_path / "buffer-0", tmp_path / "buffer-0" / snapshot_name(GOOD))
    store = PolicyStore(tmp_path / "policy-0", flush_seconds=3600)
    store.update(GOOD, 7, [np.ones((4, 2), np.float32), np.zeros(2, np.float32)])
    store.close()
    policy_aside = damage(tmp_path / "policy-0", tmp_path / "policy-0" / snapshot_name(GOOD))
    (tmp_path / "analytics.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)  # a header and garbage

    with LocalCluster(tmp_path, environment_replicas=1, buffer_replicas=1,
                      roles=("analytics", "policy", "buffer")) as cluster:
        stats = stub(buffer_grpc.BufferServiceStub, cluster.address("buffer")).GetStats(
            buffer_pb.GetStatsRequest(experiment_id=GOOD), timeout=10).stats
        assert stats.size == 11
        policy = stub(policy_grpc.PolicyServiceStub, cluster.address("policy")).GetPolicy(
            policy_pb.GetPolicyRequest(experiment_id=GOOD, newer_than_version=-1), timeout=10)
        assert policy.weights.version == 7
        analytics = stub(analytics_grpc.AnalyticsServiceStub, cluster.address("analytics"))
        analytics.ReportMetrics(analytics_pb.ReportMetricsRequest(node_name="t", node_type="test", points=[
            analytics_pb.MetricPoint(experiment_id=GOOD, metric="charts/x", value=1.0)]), timeout=10)
        assert len(analytics.QueryMetrics(analytics_pb.QueryMetricsRequest(experiment_id=GOOD, metric="charts/x"),
                                            timeout=10).points) == 1

    assert buffer_aside <= {p.name for p in (tmp_path / "buffer-0").iterdir()}
    assert policy_aside <= {p.name for p in (tmp_path / "policy-0").iterdir()}
    assert (tmp_path / "analytics.db.corrupt").is_file()
    assert "cannot be used" in (tmp_path / "buffer-0.log").read_text()


def test_a_good_metrics_database_is_kept(tmp_path):
    store = SQLiteStore(tmp_path / "m.db")
    store.write("n", "test", [Point(GOOD, "charts/x", 2.0, 1)])
    store.close()
    (tmp_path / "m.db.notes").write_text("foreign")
    reopened = SQLiteStore(tmp_path / "m.db")
    assert not (tmp_path / "m.db.corrupt").exists()
    reopened.close()
