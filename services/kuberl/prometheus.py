"""Prometheus metrics for every role: gRPC latency and outcome by method (one server and one
client interceptor), and each role's own figures read from its cores when scraped.

Role figures are collected at scrape time from the counters the cores already keep, so the
hot paths (acting, sampling, updating) pay nothing for them. Names follow Prometheus'
conventions: base units in the name, `_total` for counters, one `experiment` label; the gRPC
families use the names of go-grpc-prometheus, which existing dashboards know."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# A `_created` series per counter doubles what is scraped and no dashboard here reads it.
disable_created_metrics()
# One registry per process (a process is one role): what its /metrics port serves.
REGISTRY = CollectorRegistry()

# Unary RPCs here take from ~0.1 ms (health, stats) to seconds (a held-back push, a big batch).
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0)
_METHOD_LABELS = ("grpc_service", "grpc_method")

SERVER_HANDLED = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code",
                         [*_METHOD_LABELS, "grpc_code"], registry=REGISTRY)
SERVER_SECONDS = Histogram("grpc_server_handling_seconds", "Time the server took to answer an RPC",
                           _METHOD_LABELS, buckets=_LATENCY_BUCKETS, registry=REGISTRY)
CLIENT_HANDLED = Counter("grpc_client_handled_total", "RPCs this process made that completed, by status code",
                         [*_METHOD_LABELS, "grpc_code"], registry=REGISTRY)
CLIENT_SECONDS = Histogram("grpc_client_handling_seconds", "Time an RPC this process made took, as the caller saw it",
                           _METHOD_LABELS, buckets=_LATENCY_BUCKETS, registry=REGISTRY)


def _split(method: str | bytes) -> tuple[str, str]:
    """'/kuberl.v1.BufferService/SampleBatch' -> ('kuberl.v1.BufferService', 'SampleBatch')."""
    if isinstance(method, bytes):
        method = method.decode()
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class ServerMetrics(grpc.ServerInterceptor):
    """Times every unary call and counts it by the code it ended with (refusals by the
    authorization interceptor after this one included)."""

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        service, method = _split(details.method)
        seconds = SERVER_SECONDS.labels(service, method)
        inner = handler.unary_unary

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            failed = False
            try:
                return inner(request, context)
            except BaseException:
                failed = True
                raise
            finally:
                seconds.observe(time.perf_counter() - started)
                code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
                SERVER_HANDLED.labels(service, method, code.name).inc()

        return grpc.unary_unary_rpc_method_handler(timed, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


class ClientMetrics(grpc.UnaryUnaryClientInterceptor):
    """Times every unary call this process makes, blocking or not, until it completes."""

    def intercept_unary_unary(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        service, method = _split(details.method)
        started = time.perf_counter()
        call = continuation(details, request)

        def done(finished: Any) -> None:
            CLIENT_SECONDS.labels(service, method).observe(time.perf_counter() - started)
            CLIENT_HANDLED.labels(service, method, finished.code().name).inc()

        call.add_done_callback(done)
        return call


def counter(name: str, documentation: str, values: Iterable[tuple[str, float]]) -> Metric:
    """A per-experiment counter family (name without `_total`, which the exposition adds)."""
    family = CounterMetricFamily(name, documentation, labels=["experiment"])
    for experiment_id, value in values:
        family.add_metric([experiment_id], value)
    return family


def gauge(name: str, documentation: str, values: Iterable[tuple[str, float]], label: str = "experiment") -> Metric:
    """A gauge family by one label; values not yet known (NaN) are left out, not exported as NaN."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values:
        if not math.isnan(value):
            family.add_metric([key], value)
    return family


class RoleMetrics(Protocol):
    """A role's figures: `collect` yields its families when scraped. It has no `describe`, so
    the registry takes it as is: which families exist depends on the experiments held then."""

    def collect(self) -> Iterator[Metric]: ...


def serve_metrics(port: int, host: str, role: RoleMetrics | None = None) -> int:
    """Serves /metrics, plaintext and read-only, on host:port (0: any free port); returns the port.
    It carries figures and method names, no experiment data, and accepts no writes."""
    if role is not None:
        REGISTRY.register(role)
    # gRPC's "[::]" (the image's KUBERL_HOST) is "::" to the socket library.
    server, _thread = start_http_server(port, host.strip("[]"), registry=REGISTRY)
    return server.server_port
