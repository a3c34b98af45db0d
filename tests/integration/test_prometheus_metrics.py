"""Prometheus metrics over HTTP during a real run: every role's families present, and moving."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kuberl.config import ExperimentConfig, to_proto
from kuberl.lifecycle import Phase
from kuberl.local import LocalCluster, ReplicaProcess, experiment_stub
from kuberl.rpc import stub
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import experiment_service_pb2 as exp_pb
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).parents[2] / "charts" / "kuberl" / "dashboards" / "kuberl.json"

# Counters must grow between two scrapes of a run; gauges must be there (and these ones change).
COUNTERS = {
    "environment": ["kuberl_environment_steps", "kuberl_environment_episodes", "grpc_client_handled"],
    "buffer": ["kuberl_replay_transitions_inserted", "kuberl_replay_transitions_sampled", "grpc_server_handled"],
    "learner": ["kuberl_learner_updates", "grpc_client_handled"],
    "policy": ["grpc_server_handled"],
    "analytics": ["kuberl_analytics_points_received", "grpc_server_handled"],
    "experiment": ["grpc_client_handled"],
}
CHANGING_GAUGES = {
    "environment": ["kuberl_environment_policy_version", "kuberl_environment_episode_return"],
    "buffer": ["kuberl_replay_size_transitions"],
    "learner": ["kuberl_learner_policy_version", "kuberl_learner_loss", "kuberl_learner_mean_q",
                "kuberl_learner_env_steps"],
    "policy": ["kuberl_policy_version"],
    "experiment": ["kuberl_experiment_env_steps"],
}
PRESENT_GAUGES = {
    "environment": ["kuberl_environment_exploration_epsilon", "kuberl_environment_push_queue_batches"],
    "buffer": ["kuberl_replay_capacity_transitions", "kuberl_replay_inserts_held_back"],
    "learner": ["kuberl_learner_evaluation_return", "kuberl_learner_rate_limited_waits",
                "kuberl_learner_prefetch_queue_rounds", "kuberl_learner_result_return"],
    "policy": ["kuberl_policy_result_version"],
    "analytics": ["kuberl_analytics_queued_points"],
    "experiment": ["kuberl_experiment_phase", "kuberl_experiment_environment_replicas"],
}


def scrape(replica: ReplicaProcess) -> dict[str, float]:
    """Every sample, keyed by its name and labels (a family's samples summed under its name too)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{replica.metrics_port}/metrics", timeout=10).read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + json.dumps(s.labels, sort_keys=True)
            samples[key] = s.value
            if s.name in (family.name, f"{family.name}_total", f"{family.name}_count"):
                samples[family.name] = samples.get(family.name, 0.0) + s.value
    return samples


def test_every_role_exports_its_metrics_and_they_move(tmp_path):
    config = ExperimentConfig().replace(
        environment={"replicas": 1, "envs_per_replica": 4}, buffer={"replicas": 1},
        learner={"learning_starts": 500, "batch_size": 32, "samples_per_insert": 4, "policy_push_interval": 50},
        # Never solved: a run that ends between the two scrapes takes its series with it (seen once).
        stop={"target_return": 1e9, "max_env_steps": 10**7, "eval_interval_updates": 200, "eval_episodes": 2})
    with LocalCluster(tmp_path, environment_replicas=1, buffer_replicas=1) as cluster:
        api = experiment_stub(cluster)
        api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id="watched", config=to_proto(config)),
                            timeout=60)
        learner = cluster.replicas["learner"][0]
        wait_for(lambda: scrape(learner).get("kuberl_learner_evaluation_return") is not None, 120,
                 "the learner's first evaluation")
        # A malformed call is counted under its code, and the shard keeps serving.
        shard = cluster.replicas["buffer"][0]
        with pytest.raises(grpc.RpcError) as refused:
            stub(buffer_grpc.BufferServiceStub, shard.address).SampleBatch(
                buffer_pb.SampleBatchRequest(experiment_id="watched", count=10**9), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        before = {r.role: scrape(r) for r in cluster.everyone()}
        time.sleep(6)
        after = {r.role: scrape(r) for r in cluster.everyone()}

    for role, names in COUNTERS.items():
        for name in names:
            assert after[role].get(name, 0) > before[role].get(name, 0), (role, name, before[role].get(name))
    for role, names in CHANGING_GAUGES.items():
        for name in names:
            assert name in before[role] and name in after[role], (role, name)
            assert after[role][name] != before[role][name], (role, name, after[role][name])
    for role, names in PRESENT_GAUGES.items():
        for name in names:
            assert math.isfinite(after[role].get(name, math.nan)), (role, name)
    for role, samples in after.items():
        assert samples.get("grpc_server_handling_seconds", 0) > 0, role
        if role not in ("analytics", "policy"):  # the two that call no one
            assert samples.get("grpc_client_handling_seconds", 0) > 0, role
    invalid = ('grpc_server_handled_total{"grpc_code": "INVALID_ARGUMENT", "grpc_method": "SampleBatch", '
               '"grpc_service": "kuberl.v1.BufferService"}')
    assert after["buffer"][invalid] == 1
    phase = "kuberl_experiment_phase" + json.dumps({"experiment": "watched", "phase": Phase.RUNNING.value})
    assert after["experiment"][phase] == 1

    # The chart's Grafana dashboard asks only for metrics a run exports.
    exported = {key.split("{")[0] for samples in after.values() for key in samples}
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert queries
    for expr in queries:
        # Metric names are what is left once label matchers and `by (...)` lists are taken out.
        bare = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", re.sub(r"\{[^}]*\}", "", expr))
        names = set(re.findall(r"\b((?:kuberl|grpc)_[a-z_]+)\b", bare))
        assert names, expr
        assert names <= exported, (expr, names - exported)
