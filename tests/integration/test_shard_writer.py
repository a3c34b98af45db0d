"""An actor's writer over real shard servers, prioritized replay: a shard that holds inserts
back is passed over, not waited on, while another shard takes the batch; when every shard
holds, the writer waits; a shard whose own draws lag (the split by priority mass makes them)
is let in again once the learner's totals show the experiment within its ratio. (Uniform
replay keeps strict turns; tests/docker/test_containers.py checks they fill the shards evenly.)"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from kuberl.buffer.server import create_server
from kuberl.config import ExperimentConfig, to_proto
from kuberl.discovery import Discovery
from kuberl.environment.server import ShardWriter
from kuberl.tensors import Transitions, pack_transitions
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc

PUSH = 256
# Per shard, inserts may run 4 pushes ahead of samples before the limit holds them.
CONFIG = ExperimentConfig().replace(environment={"push_batch_size": PUSH},
                                    buffer={"replicas": 2, "prioritized": True},
                                    learner={"samples_per_insert": 1.0, "batch_size": 64, "learning_starts": 0})
HOLD_SECONDS = 30.0  # how long a held shard would keep a waiting push


def rows(n: int) -> Transitions:
    rng = np.random.default_rng(n)
    return Transitions(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 2, n), np.ones(n, np.float32),
                       rng.normal(size=(n, 4)).astype(np.float32), np.zeros(n, bool), np.zeros(n, bool),
                       np.ones(n, np.uint8))


@pytest.fixture
def shards():
    started = []
    for _ in range(2):
        server, replica = create_server(0, None, None, host="127.0.0.1")
        replica.shard.insert_wait_seconds = HOLD_SECONDS
        server.start()
        server.set_serving()
        started.append((server, replica))
    channels = [grpc.insecure_channel(f"127.0.0.1:{server.port}") for server, _ in started]
    yield [f"127.0.0.1:{server.port}" for server, _ in started], [buffer_grpc.BufferServiceStub(c) for c in channels]
    for channel in channels:
        channel.close()
    for server, replica in started:
        replica.stop()
        server.stop(0)


def hold(api: buffer_grpc.BufferServiceStub) -> int:
    """Pushes until the shard's limit holds (no sample is ever taken); returns its inserts."""
    api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="e", config=to_proto(CONFIG), obs_size=4), timeout=5)
    while True:
        try:
            api.PushTransitions(buffer_pb.PushTransitionsRequest(experiment_id="e", batch=pack_transitions(rows(PUSH)),
                                                                 refuse_if_held=True), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
            return api.GetStats(buffer_pb.GetStatsRequest(experiment_id="e"), timeout=5).stats.total_inserted


def inserted(api: buffer_grpc.BufferServiceStub) -> int:
    return api.GetStats(buffer_pb.GetStatsRequest(experiment_id="e"), timeout=5).stats.total_inserted


def test_a_held_shard_is_passed_over_while_another_takes_the_batch(shards):
    addresses, (held, open_) = shards
    held_at = hold(held)
    writer = ShardWriter("e", CONFIG, Discovery(",".join(addresses)), obs_size=4)
    stopping = threading.Event()
    started = time.monotonic()
    for _ in range(4):  # strict turns would put two of them on the held shard
        assert writer.push(rows(PUSH), stopping)
    # Had the writer waited on the held shard, a single turn there would take HOLD_SECONDS.
    assert time.monotonic() - started < HOLD_SECONDS / 3
    assert inserted(held) == held_at and inserted(open_) == 4 * PUSH


def test_when_every_shard_holds_the_writer_waits_and_keeps_the_batch(shards):
    addresses, apis = shards
    held_at = [hold(api) for api in apis]
    writer = ShardWriter("e", CONFIG, Discovery(",".join(addresses)), obs_size=4)
    stopping = threading.Event()
    threading.Timer(1.0, stopping.set).start()
    assert writer.push(rows(PUSH), stopping) is False  # waited on a held shard until told to stop
    assert [inserted(api) for api in apis] == held_at


def test_a_shard_whose_own_draws_lag_takes_inserts_once_the_experiment_is_within_its_ratio(shards):
    addresses, (lagging, drawn) = shards
    lagging_at = hold(lagging)  # never sampled: held by its own draws
    drawn_at = hold(drawn)
    # The learner draws every row from the other shard (as priority mass may make it), and says
    # what the experiment holds: as many draws as inserts over both shards.
    both = lagging_at + drawn_at
    for api, count in ((drawn, drawn_at), (lagging, 1)):
        api.SampleBatch(buffer_pb.SampleBatchRequest(experiment_id="e", count=count, experiment_inserted=both,
                                                     experiment_sampled=both), timeout=5)
    writer = ShardWriter("e", CONFIG, Discovery(addresses[0]), obs_size=4)
    started = time.monotonic()
    assert writer.push(rows(PUSH), threading.Event())
    assert time.monotonic() - started < HOLD_SECONDS / 3
    assert inserted(lagging) == lagging_at + PUSH


def test_negative_experiment_totals_are_refused_and_the_shard_keeps_serving(shards):
    _, (api, _) = shards
    hold(api)
    with pytest.raises(grpc.RpcError) as refused:
        api.SampleBatch(buffer_pb.SampleBatchRequest(experiment_id="e", count=1, experiment_inserted=-1), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "experiment_inserted" in refused.value.details()
    assert api.SampleBatch(buffer_pb.SampleBatchRequest(experiment_id="e", count=1), timeout=5).batch
