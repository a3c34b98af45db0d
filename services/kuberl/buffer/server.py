"""gRPC front of a replay shard, plus its snapshot and metrics loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

from kuberl.buffer.core import Shard
from kuberl.config import Manifest, from_proto
from kuberl.metrics import MetricsReporter
from kuberl.prometheus import Metric, counter, gauge
from kuberl.replay import ReplayBuffer
from kuberl.rpc import Server, require_experiment_id, rpc_errors
from kuberl.sizes import MAX_SAMPLE_ROWS
from kuberl.tensors import pack, pack_transitions, unpack_transitions, unpack_vector
from kuberl.v1 import buffer_service_pb2 as pb
from kuberl.v1 import common_pb2
from kuberl.v1 import buffer_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)



def _stats(buffer: ReplayBuffer) -> pb.ReplayStats:
    return pb.ReplayStats(size=buffer.size, capacity=buffer.capacity, total_inserted=buffer.total_inserted,
                          total_sampled=buffer.total_sampled, priority_mass=buffer.priority_mass)


class BufferServicer(pb_grpc.BufferServiceServicer):
    def __init__(self, shard: Shard):
        self.shard = shard

    @rpc_errors
    def OpenReplay(self, request: pb.OpenReplayRequest, context: grpc.ServicerContext) -> pb.OpenReplayResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        if request.obs_size < 0:
            raise ValueError(f"obs_size: must be >= 0, got {request.obs_size}")
        table = self.shard.open(experiment_id, from_proto(request.config), request.obs_size)
        return pb.OpenReplayResponse(stats=_stats(table.buffer), restored=table.restored)

    @rpc_errors
    def PushTransitions(self, request: pb.PushTransitionsRequest, context: grpc.ServicerContext
                        ) -> pb.PushTransitionsResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        buffer = self.shard.push(experiment_id, unpack_transitions(request.batch), wait=not request.refuse_if_held)
        return pb.PushTransitionsResponse(stats=_stats(buffer))

    @rpc_errors
    def SampleBatch(self, request: pb.SampleBatchRequest, context: grpc.ServicerContext) -> pb.SampleBatchResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        if request.count > MAX_SAMPLE_ROWS:
            raise ValueError(f"count: at most {MAX_SAMPLE_ROWS}, got {request.count}")
        drawn, buffer = self.shard.sample(experiment_id, request.count, request.experiment_inserted,
                                          request.experiment_sampled)
        reply = pb.SampleBatchResponse(batch=pack_transitions(drawn.rows), stats=_stats(buffer))
        if drawn.keys is not None and drawn.probabilities is not None:
            reply.keys.CopyFrom(pack(drawn.keys.astype(np.int64, copy=False)))
            reply.probabilities.CopyFrom(pack(drawn.probabilities.astype(np.float32)))
        return reply

    @rpc_errors
    def UpdatePriorities(self, request: pb.UpdatePrioritiesRequest, context: grpc.ServicerContext
                         ) -> pb.UpdatePrioritiesResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        keys = unpack_vector(request.keys, "keys", np.int64)
        if len(keys) > MAX_SAMPLE_ROWS:
            raise ValueError(f"keys: at most {MAX_SAMPLE_ROWS}, got {len(keys)}")
        updated = self.shard.update_priorities(experiment_id, keys,
                                               unpack_vector(request.priorities, "priorities", np.float32))
        return pb.UpdatePrioritiesResponse(updated=updated)

    @rpc_errors
    def GetStats(self, request: pb.GetStatsRequest, context: grpc.ServicerContext) -> pb.GetStatsResponse:
        experiment_id = require_experiment_id(request.experiment_id)
        return pb.GetStatsResponse(stats=_stats(self.shard.table(experiment_id).buffer))

    @rpc_errors
    def ReleaseExperiment(self, request: common_pb2.ReleaseExperimentRequest, context: grpc.ServicerContext
                          ) -> common_pb2.ReleaseExperimentResponse:
        if self.shard.release(require_experiment_id(request.experiment_id)):
            log.info("%s: replay released", request.experiment_id)
        return common_pb2.ReleaseExperimentResponse()


class BufferMetrics:
    """The shard's tables as Prometheus families."""

    def __init__(self, replica: BufferReplica):
        self.shard = replica.shard

    def collect(self) -> Iterator[Metric]:
        tables = self.shard.tables.items()
        yield counter("kuberl_replay_transitions_inserted", "Transitions written to this shard",
                      ((e, t.buffer.total_inserted) for e, t in tables))
        yield counter("kuberl_replay_transitions_sampled", "Transitions this shard drew for the learner",
                      ((e, t.buffer.total_sampled) for e, t in tables))
        yield counter("kuberl_replay_inserts_held_back", "Pushes the samples-per-insert limit made wait",
                      ((e, t.limiter.held_back) for e, t in tables))
        yield gauge("kuberl_replay_size_transitions", "Transitions this shard holds",
                    ((e, t.buffer.size) for e, t in tables))
        yield gauge("kuberl_replay_capacity_transitions", "Transitions this shard can hold",
                    ((e, t.buffer.capacity) for e, t in tables))


class BufferReplica:
    """The shard plus its housekeeping thread (snapshots, buffer-size metrics)."""

    def __init__(self, data_dir: Path | None, metrics: MetricsReporter | None, tick_seconds: float = 1.0,
                 max_tables: int = 64, max_bytes: int | None = None):
        self.shard = Shard(data_dir, max_tables=max_tables, max_bytes=max_bytes)
        self.metrics = metrics
        self._stop = threading.Event()
        self._tick = tick_seconds
        self._thread = threading.Thread(target=self._housekeeping, name="buffer-housekeeping", daemon=True)
        self._thread.start()

    def follow(self, manifest: Manifest) -> None:
        """Serves an experiment file's version (cluster mode): opens its table, or re-opens it
        with the new settings; the replay stays."""
        self.shard.open(manifest.experiment_id, manifest.config)

    def _housekeeping(self) -> None:
        while not self._stop.wait(self._tick):
            self.shard.snapshot_due()  # a failed write is logged per experiment, and retried
            if self.metrics is not None:
                for experiment_id, buffer in self.shard.experiments().items():
                    self.metrics.record(experiment_id, "buffer/size", buffer.size, buffer.total_inserted)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.shard.close()
        self.shard.snapshot_due(force=True)
        if self.metrics is not None:
            self.metrics.close()


def create_server(port: int, data_dir: Path | None, metrics: MetricsReporter | None, host: str = "127.0.0.1",
                  max_tables: int = 64, max_bytes: int | None = None) -> tuple[Server, BufferReplica]:
    replica = BufferReplica(data_dir, metrics, max_tables=max_tables, max_bytes=max_bytes)
    server = Server(BufferServicer(replica.shard), pb_grpc.add_BufferServiceServicer_to_server, pb.DESCRIPTOR, port,
                    host)
    return server, replica
