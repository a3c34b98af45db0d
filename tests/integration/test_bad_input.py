"""Malformed RPCs get INVALID_ARGUMENT or NOT_FOUND over a real socket, and the service keeps serving."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kuberl.analytics.server import create_server as create_analytics
from kuberl.buffer.server import create_server as create_buffer
from kuberl.config import ExperimentConfig, to_proto
from kuberl.policy.server import create_server as create_policy
from kuberl.tensors import Transitions, pack, pack_transitions, unpack_vector
from kuberl.v1 import analytics_service_pb2 as analytics_pb
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import common_pb2
from kuberl.v1 import policy_service_pb2 as policy_pb
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc


def transitions(rows: int, reward: float = 1.0) -> Transitions:
    rng = np.random.default_rng(0)
    return Transitions(rng.normal(size=(rows, 4)).astype(np.float32), rng.integers(0, 2, rows),
                       np.full(rows, reward, np.float32), rng.normal(size=(rows, 4)).astype(np.float32),
                       np.zeros(rows, bool), np.zeros(rows, bool), np.ones(rows, np.uint8))


@pytest.fixture
def buffer_channel(tmp_path):
    server, role = create_buffer(0, tmp_path, None, host="127.0.0.1")
    server.start()
    server.set_serving()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield channel
    channel.close()
    role.stop()
    server.stop(0)


def assert_still_serving(channel: grpc.Channel) -> None:
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_malformed_transition_batches_are_refused_and_the_shard_keeps_serving(buffer_channel):
    api = buffer_grpc.BufferServiceStub(buffer_channel)
    api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="e1", config=to_proto(ExperimentConfig())), timeout=5)

    good = pack_transitions(transitions(8))
    wrong_length = common_pb2.TransitionBatch()
    wrong_length.CopyFrom(good)
    wrong_length.obs.data = wrong_length.obs.data[:-3]
    nan_reward = pack_transitions(transitions(8, reward=math.nan))
    missing_column = common_pb2.TransitionBatch()
    missing_column.CopyFrom(good)
    missing_column.ClearField("terminated")
    wrong_rows = common_pb2.TransitionBatch()
    wrong_rows.CopyFrom(good)
    wrong_rows.actions.CopyFrom(pack(np.zeros(5, np.int64)))

    cases = [
        ("e1", wrong_length, grpc.StatusCode.INVALID_ARGUMENT, "batch.obs"),
        ("e1", nan_reward, grpc.StatusCode.INVALID_ARGUMENT, "batch.rewards"),
        ("e1", missing_column, grpc.StatusCode.INVALID_ARGUMENT, "batch.terminated"),
        ("e1", wrong_rows, grpc.StatusCode.INVALID_ARGUMENT, "batch.actions"),
        ("nobody", good, grpc.StatusCode.NOT_FOUND, "nobody"),
        ("", good, grpc.StatusCode.INVALID_ARGUMENT, "experiment_id"),
    ]
    for experiment_id, batch, code, mentioned in cases:
        with pytest.raises(grpc.RpcError) as err:
            api.PushTransitions(buffer_pb.PushTransitionsRequest(experiment_id=experiment_id, batch=batch), timeout=5)
        assert err.value.code() == code, (mentioned, err.value.details())
        assert mentioned in err.value.details()

    # A later, well-formed batch of another shape than the first is refused too; the first shape wins.
    api.PushTransitions(buffer_pb.PushTransitionsRequest(experiment_id="e1", batch=good), timeout=5)
    other_shape = transitions(3)._replace(obs=np.zeros((3, 6), np.float32), next_obs=np.zeros((3, 6), np.float32))
    with pytest.raises(grpc.RpcError) as err:
        api.PushTransitions(buffer_pb.PushTransitionsRequest(experiment_id="e1",
                                                             batch=pack_transitions(other_shape)), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    assert_still_serving(buffer_channel)
    stats = api.GetStats(buffer_pb.GetStatsRequest(experiment_id="e1"), timeout=5).stats
    assert stats.size == 8 and stats.total_inserted == 8  # only the good batch landed
    sample = api.SampleBatch(buffer_pb.SampleBatchRequest(experiment_id="e1", count=5), timeout=5)
    assert len(sample.batch.rewards.shape) == 1 and sample.batch.rewards.shape[0] == 5


def test_bad_sample_and_config_requests(buffer_channel):
    api = buffer_grpc.BufferServiceStub(buffer_channel)
    bad_config = to_proto(ExperimentConfig())
    bad_config.learner.batch_size = 0
    with pytest.raises(grpc.RpcError) as err:
        api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="e2", config=bad_config), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.learner.batchSize" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        api.SampleBatch(buffer_pb.SampleBatchRequest(experiment_id="e2", count=4), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="e2", config=to_proto(ExperimentConfig())), timeout=5)
    for count in (0, -1, 1 << 30):
        with pytest.raises(grpc.RpcError) as err:
            api.SampleBatch(buffer_pb.SampleBatchRequest(experiment_id="e2", count=count), timeout=5)
        assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    with pytest.raises(grpc.RpcError) as err:
        api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="e3", config=to_proto(ExperimentConfig()),
                                                   obs_size=-1), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_still_serving(buffer_channel)


def test_malformed_priority_updates_are_refused_and_the_priorities_stay(buffer_channel):
    api = buffer_grpc.BufferServiceStub(buffer_channel)
    config = ExperimentConfig().replace(buffer={"prioritized": True})
    api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="ranked", config=to_proto(config)), timeout=5)
    api.PushTransitions(buffer_pb.PushTransitionsRequest(experiment_id="ranked",
                                                         batch=pack_transitions(transitions(8))), timeout=5)
    drawn = api.SampleBatch(buffer_pb.SampleBatchRequest(experiment_id="ranked", count=4), timeout=5)
    keys = unpack_vector(drawn.keys, "keys", np.int64)
    mass = api.GetStats(buffer_pb.GetStatsRequest(experiment_id="ranked"), timeout=5).stats.priority_mass
    good = pack(np.ones(len(keys), np.float32))
    cases = [
        (pack(keys.astype(np.float64)), good, "keys"),  # keys that are not integers
        (pack(keys.reshape(2, 2)), good, "keys"),
        (drawn.keys, pack(np.ones(len(keys), np.float64)), "priorities"),
        (drawn.keys, pack(np.ones(len(keys) + 1, np.float32)), "priorities"),  # not one each
        (drawn.keys, pack(np.full(len(keys), np.nan, np.float32)), "priorities"),
        (drawn.keys, pack(np.full(len(keys), -1, np.float32)), "priorities"),
    ]
    for bad_keys, bad_priorities, mentioned in cases:
        with pytest.raises(grpc.RpcError) as err:
            api.UpdatePriorities(buffer_pb.UpdatePrioritiesRequest(experiment_id="ranked", keys=bad_keys,
                                                                   priorities=bad_priorities), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (mentioned, err.value.details())
        assert mentioned in err.value.details()
    assert_still_serving(buffer_channel)
    assert api.GetStats(buffer_pb.GetStatsRequest(experiment_id="ranked"), timeout=5).stats.priority_mass == mass
    updated = api.UpdatePriorities(buffer_pb.UpdatePrioritiesRequest(experiment_id="ranked", keys=drawn.keys,
                                                                     priorities=good), timeout=5).updated
    assert updated == len(keys)


def test_a_replay_that_would_not_fit_the_shard_is_refused_resource_exhausted(tmp_path):
    server, role = create_buffer(0, tmp_path, None, host="127.0.0.1", max_bytes=1 << 20)
    server.start()
    server.set_serving()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            api = buffer_grpc.BufferServiceStub(channel)
            big = to_proto(ExperimentConfig().replace(buffer={"capacity": 100_000}))
            with pytest.raises(grpc.RpcError) as err:
                api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="big", config=big, obs_size=4), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "spec.buffer.capacity" in err.value.details() and "--max-replay-bytes" in err.value.details()
            api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id="small", config=to_proto(ExperimentConfig()),
                                                       obs_size=4), timeout=5)  # 10 000 rows fit
            assert_still_serving(channel)
    finally:
        role.stop()
        server.stop(0)


def test_policy_refuses_malformed_and_stale_weights():
    server, _ = create_policy(0, host="127.0.0.1")
    server.start()
    server.set_serving()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            api = policy_grpc.PolicyServiceStub(channel)
            weights = common_pb2.PolicyWeights(version=3, tensors=[pack(np.ones((2, 2), np.float32))])
            api.UpdatePolicy(policy_pb.UpdatePolicyRequest(experiment_id="p", weights=weights), timeout=5)
            for bad in (common_pb2.PolicyWeights(version=3, tensors=weights.tensors),  # not newer
                        common_pb2.PolicyWeights(version=4, tensors=[pack(np.full(2, np.nan, np.float32))]),
                        common_pb2.PolicyWeights(version=5)):
                with pytest.raises(grpc.RpcError) as err:
                    api.UpdatePolicy(policy_pb.UpdatePolicyRequest(experiment_id="p", weights=bad), timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            reply = api.GetPolicy(policy_pb.GetPolicyRequest(experiment_id="p", newer_than_version=-1), timeout=5)
            assert reply.updated and reply.weights.version == 3
            assert not api.GetPolicy(policy_pb.GetPolicyRequest(experiment_id="p", newer_than_version=3),
                                     timeout=5).updated
            # A result must come with a config that can be used again; results need an experiment id.
            config = to_proto(ExperimentConfig())
            config.learner.learning_rate = -1.0
            with pytest.raises(grpc.RpcError) as err:
                api.UpdatePolicy(policy_pb.UpdatePolicyRequest(
                    experiment_id="p", weights=weights, config=config,
                    result=policy_pb.Evaluation(mean_return=1.0, episodes=1)), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "learning" in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                api.DeleteResult(policy_pb.DeleteResultRequest(experiment_id=""), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert not api.ListResults(policy_pb.ListResultsRequest(), timeout=5).results
            assert_still_serving(channel)
    finally:
        server.stop(0)


def test_analytics_refuses_non_finite_values_and_keeps_the_rest(tmp_path):
    server, store = create_analytics(0, f"sqlite:///{tmp_path / 'a.db'}", host="127.0.0.1")
    server.start()
    server.set_serving()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            api = analytics_grpc.AnalyticsServiceStub(channel)
            for value in (math.nan, math.inf):
                with pytest.raises(grpc.RpcError) as err:
                    api.ReportMetrics(analytics_pb.ReportMetricsRequest(node_name="n", points=[
                        analytics_pb.MetricPoint(experiment_id="x", metric="m", value=1.0, step=1),
                        analytics_pb.MetricPoint(experiment_id="x", metric="m", value=value, step=2)]), timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "points[1].value" in err.value.details()
            api.ReportMetrics(analytics_pb.ReportMetricsRequest(node_name="n", points=[
                analytics_pb.MetricPoint(experiment_id="x", metric="m", value=2.5, step=3)]), timeout=5)
            reply = api.QueryMetrics(analytics_pb.QueryMetricsRequest(experiment_id="x", metric="m"), timeout=5)
            assert [(p.value, p.step, p.node_name) for p in reply.points] == [(2.5, 3, "n")]  # batches are atomic
            assert_still_serving(channel)
    finally:
        server.stop(0)
        store.close()


def test_a_restarted_policy_role_comes_back_with_its_newest_weights(tmp_path):
    first, store = create_policy(0, host="127.0.0.1", data_dir=tmp_path)
    first.start()
    first.set_serving()
    weights = common_pb2.PolicyWeights(version=7, tensors=[pack(np.arange(6, dtype=np.float32).reshape(2, 3))])
    with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        policy_grpc.PolicyServiceStub(channel).UpdatePolicy(
            policy_pb.UpdatePolicyRequest(experiment_id="team/run 1", weights=weights), timeout=5)
    first.stop(0)
    store.close()  # as on SIGTERM; a SIGKILL loses at most the last second's versions

    second, store = create_policy(0, host="127.0.0.1", data_dir=tmp_path)
    second.start()
    second.set_serving()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            reply = policy_grpc.PolicyServiceStub(channel).GetPolicy(
                policy_pb.GetPolicyRequest(experiment_id="team/run 1", newer_than_version=-1), timeout=5)
        assert reply.updated and reply.weights.version == 7
        assert reply.weights.tensors[0] == weights.tensors[0]
    finally:
        second.stop(0)
        store.close()


def test_an_actor_skips_a_policy_it_cannot_load_and_keeps_acting():
    from kuberl.discovery import Discovery
    from kuberl.environment.server import Rollout

    server, store = create_policy(0, host="127.0.0.1")
    server.start()
    server.set_serving()
    try:
        store.update("a", 9, [np.ones((3, 3), np.float32)])  # no CartPole network has this shape
        rollout = Rollout("a", ExperimentConfig(), 0, Discovery("127.0.0.1:1"), f"127.0.0.1:{server.port}", None)
        before = rollout.actor.params
        rollout._refresh_policy()
        assert rollout.rejected_version == 9 and rollout.actor.policy_version == -1  # its initial weights
        assert rollout.actor.params is before
        rollout.actor.step()  # still acting on what it had
        store.update("a", 10, [np.ones((3, 3), np.float32)])
        rollout._refresh_policy()
        assert rollout.rejected_version == 10
    finally:
        server.stop(0)
