"""Client side of analytics: roles record points locally and a background thread ships them
in batches (one ReportMetrics per flush, never one RPC per value)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import grpc

from kuberl.rpc import stub
from kuberl.v1 import analytics_service_pb2 as pb
from kuberl.v1 import analytics_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class MetricsReporter:
    """Batches metric points to the analytics role every `interval` seconds.

    Holds at most `max_pending` points while analytics is unreachable; past that the oldest
    are dropped and counted (a metric is worth less than the training it describes).
    """

    def __init__(self, address: str, node_name: str, node_type: str, interval: float = 1.0,
                 max_pending: int = 100_000):
        self.address = address
        self.node_name = node_name
        self.node_type = node_type
        self.interval = interval
        self.dropped = 0
        # (sequence number, point): a flush removes exactly what it sent, even if the oldest
        # points were pushed out meanwhile.
        self._pending: deque[tuple[int, pb.MetricPoint]] = deque(maxlen=max_pending)
        self._recorded = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"metrics-{node_name}", daemon=True)
        self._thread.start()

    def record(self, experiment_id: str, metric: str, value: float, step: int) -> None:
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._recorded += 1
            self._pending.append((self._recorded, pb.MetricPoint(
                experiment_id=experiment_id, metric=metric, value=float(value), step=int(step),
                timestamp=time.time())))

    def flush(self) -> bool:
        with self._lock:
            batch = list(self._pending)
        if not batch:
            return True
        try:
            stub(pb_grpc.AnalyticsServiceStub, self.address).ReportMetrics(
                pb.ReportMetricsRequest(node_name=self.node_name, node_type=self.node_type,
                                        points=[point for _, point in batch]), timeout=10.0)
        except grpc.RpcError as err:
            log.warning("analytics at %s: %s (%d points kept)", self.address, err.code().name, len(batch))
            return False
        last_sent = batch[-1][0]
        with self._lock:
            while self._pending and self._pending[0][0] <= last_sent:
                self._pending.popleft()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()
