"""The live dashboard: one small page (uPlot, from npm, draws the curves) over two JSON
endpoints, every experiment's status and each one's learning curves from the metrics store.

Read-only and served on loopback unless told otherwise: it shows figures and names, accepts no
writes, and in a cluster is reached through `kubectl port-forward`."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, urlparse

import grpc

from kuberl.rpc import stub
from kuberl.v1 import analytics_service_pb2 as analytics_pb
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc

log = logging.getLogger(__name__)

# The curves the page draws: (metric as the roles report it, its label).
CURVES = {"charts/episodic_return": "training return", "charts/eval_return": "evaluation return",
          "losses/td_loss": "TD loss"}
# Newest points per curve per refresh: enough for a smooth line, small enough to send every 2 s.
MAX_POINTS = 2000
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
          "/uPlot.iife.min.js": ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
          "/uPlot.min.css": ("uPlot.min.css", "text/css; charset=utf-8")}


def learning_curves(analytics_address: str, experiment_id: str, timeout: float = 5.0) -> dict[str, list[list[float]]]:
    """Each curve as [[env step, value], ...], oldest first (empty where nothing was reported)."""
    api = stub(analytics_grpc.AnalyticsServiceStub, analytics_address)
    curves = {}
    for metric in CURVES:
        reply = api.QueryMetrics(analytics_pb.QueryMetricsRequest(experiment_id=experiment_id, metric=metric,
                                                                  limit=MAX_POINTS, newest_first=True),
                                 timeout=timeout)
        curves[metric] = [[p.step, p.value] for p in reply.points]
    return curves


class Dashboard:
    """Serves the page until `close`. `experiments` lists the statuses to show (as
    kuberl.experiment.server.status_fields gives them); curves come from analytics."""

    def __init__(self, port: int, host: str, experiments: Callable[[], list[dict[str, Any]]], analytics_address: str):
        dashboard = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                dashboard._answer(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
                log.debug("dashboard: " + format, *args)

        self.experiments = experiments
        self.analytics_address = analytics_address
        self._server = ThreadingHTTPServer((host.strip("[]"), port), Handler)  # "[::]" is gRPC's spelling
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="dashboard", daemon=True)
        self._thread.start()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        url = urlparse(request.path)
        try:
            if url.path in STATIC:
                name, content_type = STATIC[url.path]
                body = (files(__package__) / "static" / name).read_bytes()
            elif url.path == "/api/experiments":
                body, content_type = json.dumps(self.experiments()).encode(), "application/json"
            elif url.path == "/api/curves":
                experiment_id = parse_qs(url.query).get("experiment", [""])[0]
                if not experiment_id:
                    self._send(request, HTTPStatus.BAD_REQUEST, b"experiment: required", "text/plain")
                    return
                body = json.dumps(learning_curves(self.analytics_address, experiment_id)).encode()
                content_type = "application/json"
            else:
                self._send(request, HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                return
        except grpc.RpcError as err:  # a role is away: the page says so and asks again
            self._send(request, HTTPStatus.SERVICE_UNAVAILABLE, f"{err.code().name}: {err.details()}".encode(),
                       "text/plain")
            return
        self._send(request, HTTPStatus.OK, body, content_type)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: HTTPStatus, body: bytes, content_type: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        request.wfile.write(body)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
