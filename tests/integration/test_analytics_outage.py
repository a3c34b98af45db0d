"""The analytics role through a database outage: reports keep being acknowledged into a bounded
queue, nothing acknowledged is lost when the server comes back, and a full queue refuses."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from kuberl.analytics.server import create_server
from kuberl.v1 import analytics_service_pb2 as pb
from kuberl.v1 import analytics_service_pb2_grpc as pb_grpc


@pytest.fixture
def analytics(mariadb, mysql_password):
    servers = []

    def start(database: str, max_queued_points: int = 100_000):
        server, store = create_server(0, mariadb.url(database), host="127.0.0.1", max_queued_points=max_queued_points)
        server.start()
        server.set_serving()
        servers.append((server, store))
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        return pb_grpc.AnalyticsServiceStub(channel), store

    yield start
    if mariadb.process is None:
        mariadb.start()
    for server, store in servers:
        server.stop(0)
        store.close()


def report(api, node: str, first_step: int, count: int = 50) -> None:
    api.ReportMetrics(pb.ReportMetricsRequest(node_name=node, node_type="environment", points=[
        pb.MetricPoint(experiment_id="outage", metric="charts/episodic_return", value=float(step), step=step)
        for step in range(first_step, first_step + count)]), timeout=10)


def stored_steps(api) -> list[int]:
    reply = api.QueryMetrics(pb.QueryMetricsRequest(experiment_id="outage", metric="charts/episodic_return"),
                             timeout=10)
    return [p.step for p in reply.points]


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    return False


def test_database_restart_mid_stream_loses_no_acknowledged_metric(mariadb, analytics):
    api, store = analytics("outage_restart")
    acknowledged: list[int] = []
    refused: list[grpc.StatusCode] = []
    stop = threading.Event()

    def writer():
        step = 0
        while not stop.is_set():
            try:
                report(api, "env-0", step)
                acknowledged.extend(range(step, step + 50))
            except grpc.RpcError as err:
                refused.append(err.code())
            step += 50
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert wait_for(lambda: len(acknowledged) >= 500, 30)
        mariadb.stop(kill=True)  # the server dies mid-stream
        acknowledged_at_kill = len(acknowledged)
        assert wait_for(lambda: len(acknowledged) >= acknowledged_at_kill + 500, 30), "reports stall without the DB"
        with pytest.raises(grpc.RpcError) as err:
            stored_steps(api)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # reads need the database
        assert store.queued_points > 0
        mariadb.start()
        assert wait_for(lambda: store.queued_points == 0, 60), "the queue never drained"
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert not refused
    assert wait_for(lambda: store.queued_points == 0, 30)
    assert sorted(stored_steps(api)) == sorted(acknowledged)


def test_a_full_queue_answers_resource_exhausted_and_keeps_what_it_took(mariadb, analytics):
    api, store = analytics("outage_full", max_queued_points=200)
    report(api, "env-0", 0)  # schema and ids in place
    mariadb.stop()
    for first in (50, 100, 150, 200):
        report(api, "env-0", first)
    with pytest.raises(grpc.RpcError) as err:
        report(api, "env-0", 250)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    mariadb.start()
    assert wait_for(lambda: store.queued_points == 0, 60)
    assert stored_steps(api) == list(range(0, 250))
