"""gRPC front of the analytics role."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kuberl.analytics.buffered import BufferedStore
from kuberl.analytics.core import MetricsStore, Point, Query, open_store, redact_url
from kuberl.roles import DEFAULT_RESULT_RETENTION_SECONDS
from kuberl.rpc import Server, require_experiment_id, rpc_errors
from kuberl.v1 import analytics_service_pb2 as pb
from kuberl.v1 import common_pb2
from kuberl.v1 import analytics_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class AnalyticsServicer(pb_grpc.AnalyticsServiceServicer):
    def __init__(self, store: MetricsStore):
        self.store = store

    @rpc_errors
    def ReportMetrics(self, request: pb.ReportMetricsRequest, context: grpc.ServicerContext
                      ) -> pb.ReportMetricsResponse:
        points = [Point(p.experiment_id, p.metric, p.value, p.step, p.timestamp) for p in request.points]
        self.store.write(request.node_name, request.node_type or "unknown", points)
        return pb.ReportMetricsResponse(accepted=len(points))

    @rpc_errors
    def QueryMetrics(self, request: pb.QueryMetricsRequest, context: grpc.ServicerContext
                     ) -> pb.QueryMetricsResponse:
        require_experiment_id(request.experiment_id)
        if not request.metric:
            raise ValueError("metric: required")
        if request.limit < 0:
            raise ValueError(f"limit: must be >= 0, got {request.limit}")
        points, total = self.store.query(Query(
            experiment_id=request.experiment_id, metric=request.metric, node_name=request.node_name,
            min_step=request.min_step if request.HasField("min_step") else None,
            max_step=request.max_step if request.HasField("max_step") else None,
            limit=request.limit, newest_first=request.newest_first))
        return pb.QueryMetricsResponse(total=total, points=[
            pb.MetricPoint(experiment_id=p.experiment_id, metric=p.metric, value=p.value, step=p.step,
                           timestamp=p.timestamp, node_name=p.node_name) for p in points])


    @rpc_errors
    def ReleaseExperiment(self, request: common_pb2.ReleaseExperimentRequest, context: grpc.ServicerContext
                          ) -> common_pb2.ReleaseExperimentResponse:
        deleted = self.store.release(require_experiment_id(request.experiment_id), request.purge)
        log.info("%s: released (%d metric points deleted)", request.experiment_id, deleted)
        return common_pb2.ReleaseExperimentResponse()


class AnalyticsMetrics:
    """The store's intake as Prometheus families."""

    def __init__(self, store: BufferedStore):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("kuberl_analytics_points_received", "Metric points reported by the roles",
                                  value=self.store.points_received)
        yield GaugeMetricFamily("kuberl_analytics_queued_points", "Points waiting for the database to come back",
                                value=self.store.queued_points)


def create_server(port: int, database_url: str, host: str = "127.0.0.1", max_queued_points: int = 100_000,
                  result_retention_seconds: float = DEFAULT_RESULT_RETENTION_SECONDS) -> tuple[Server, BufferedStore]:
    store = BufferedStore(open_store(database_url), max_queued_points,
                          result_retention_seconds=result_retention_seconds)
    log.info("metrics go to %s", redact_url(database_url))
    server = Server(AnalyticsServicer(store), pb_grpc.add_AnalyticsServiceServicer_to_server, pb.DESCRIPTOR, port,
                    host)
    return server, store
