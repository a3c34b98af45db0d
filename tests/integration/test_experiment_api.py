"""The experiment role over real processes: round-robin over actors, Stop reaches the owner, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import grpc
import pytest
import yaml

from kuberl.config import ExperimentConfig, to_proto
from kuberl.lifecycle import Phase
from kuberl.local import LocalCluster, experiment_stub
from kuberl.rpc import stub
from kuberl.tensors import unpack_weights
from kuberl.v1 import analytics_service_pb2 as analytics_pb
from kuberl.v1 import analytics_service_pb2_grpc as analytics_grpc
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import environment_service_pb2 as env_pb
from kuberl.v1 import environment_service_pb2_grpc as env_grpc
from kuberl.v1 import experiment_service_pb2 as exp_pb
from kuberl.v1 import learner_service_pb2 as learner_pb
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc
from kuberl.v1 import policy_service_pb2 as policy_pb
from kuberl.v1 import policy_service_pb2_grpc as policy_grpc
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def start_rollout(address: str, experiment_id: str) -> grpc.StatusCode:
    try:
        stub(env_grpc.EnvironmentServiceStub, address).StartRollout(
            env_pb.StartRolloutRequest(experiment_id=experiment_id), timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_experiments_spread_round_robin_and_stop_reaches_the_owner(tmp_path):
    config = ExperimentConfig().replace(environment={"replicas": 1, "envs_per_replica": 2},
                                        stop={"max_env_steps": 10_000_000})
    with LocalCluster(tmp_path, environment_replicas=3, buffer_replicas=1) as cluster:
        api = experiment_stub(cluster)
        actors = [r.address for r in cluster.replicas["environment"]]
        owners = {}
        for i in range(3):
            reply = api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id=f"e{i}", config=to_proto(config)),
                                        timeout=60)
            assert reply.experiment_id == f"e{i}"
            (owners[f"e{i}"],) = reply.environment_replicas
        assert sorted(owners.values()) == sorted(actors), "three experiments, three different actors"

        listed = api.ListExperiments(exp_pb.ListExperimentsRequest(), timeout=30).experiments
        assert {s.experiment_id for s in listed} == {"e0", "e1", "e2"}
        assert all(s.phase == exp_pb.EXPERIMENT_PHASE_RUNNING for s in listed)
        # The CLI's view of the same: a table, or every field as JSON or YAML.
        def status(*args: str) -> str:
            done = subprocess.run([sys.executable, "-m", "kuberl.cli", "status", *args, "--address",
                                   cluster.address("experiment"), "--tls-dir", str(cluster.admin.directory)],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout
        as_json, as_yaml = json.loads(status("-o", "json")), yaml.safe_load(status("-o", "yaml"))
        for rows in (as_json, as_yaml):  # the same fields either way (the figures move on between the calls)
            assert {row["experimentId"]: row["phase"] for row in rows} == {f"e{i}": Phase.RUNNING.value
                                                                          for i in range(3)}
            assert all(row.keys() == as_json[0].keys() and row["envId"] == "CartPole-v1" for row in rows)
            assert all(isinstance(row["envSteps"], int) and len(row["environmentReplicas"]) == 1 for row in rows)
        table = status().splitlines()
        assert table[0].split()[:2] == ["EXPERIMENT", "PHASE"] and len(table) == 4

        # Each experiment lives on its owner only.
        for experiment_id, owner in owners.items():
            for address in actors:
                expected = grpc.StatusCode.OK if address == owner else grpc.StatusCode.NOT_FOUND
                assert start_rollout(address, experiment_id) == expected

        with pytest.raises(grpc.RpcError) as err:
            api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id="e1", config=to_proto(config)), timeout=30)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

        stopped = api.StopExperiment(exp_pb.StopExperimentRequest(experiment_id="e1"), timeout=60).status
        assert stopped.phase == exp_pb.EXPERIMENT_PHASE_STOPPED
        assert start_rollout(owners["e1"], "e1") == grpc.StatusCode.NOT_FOUND, "the owner dropped it"
        assert start_rollout(owners["e0"], "e0") == grpc.StatusCode.OK, "the others run on"
        # An ended experiment keeps its id and its results until deleted: no silent reuse of the old run.
        with pytest.raises(grpc.RpcError) as err:
            api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id="e1", config=to_proto(config)), timeout=30)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "DeleteExperiment" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub(learner_grpc.LearnerServiceStub, cluster.address("learner")).TrainStep(
                learner_pb.TrainStepRequest(experiment_id="e1", num_updates=10), timeout=30)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        with pytest.raises(grpc.RpcError) as err:
            api.GetExperimentStatus(exp_pb.GetExperimentStatusRequest(experiment_id="nope"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        continuous = to_proto(config)
        continuous.env_id = "Pendulum-v1"
        with pytest.raises(grpc.RpcError) as err:
            api.StartExperiment(exp_pb.StartExperimentRequest(config=continuous), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Discrete" in err.value.details()

        # Two starts and a stop of one id at once: one start wins, and the stop, waiting for it,
        # leaves nothing rolling on the owner.
        outcomes: list[object] = []

        def start() -> None:
            try:
                outcomes.append(api.StartExperiment(exp_pb.StartExperimentRequest(
                    experiment_id="race", config=to_proto(config)), timeout=60).environment_replicas[0])
            except grpc.RpcError as err:
                outcomes.append(err.code())

        def stop() -> exp_pb.ExperimentStatus:
            return wait_for(lambda: code_of(lambda: api.StopExperiment(
                exp_pb.StopExperimentRequest(experiment_id="race"), timeout=60)) == grpc.StatusCode.OK, 30, "a stop")

        starters = [threading.Thread(target=start) for _ in range(2)]
        stopper = threading.Thread(target=stop)
        for thread in (*starters, stopper):
            thread.start()
        for thread in (*starters, stopper):
            thread.join()
        (owner,) = [o for o in outcomes if isinstance(o, str)]
        assert outcomes.count(grpc.StatusCode.ALREADY_EXISTS) == 1, outcomes
        assert status_of(api, "race").phase == exp_pb.EXPERIMENT_PHASE_STOPPED
        assert start_rollout(owner, "race") == grpc.StatusCode.NOT_FOUND


def status_of(api, experiment_id: str) -> exp_pb.ExperimentStatus:
    return api.GetExperimentStatus(exp_pb.GetExperimentStatusRequest(experiment_id=experiment_id), timeout=10).status


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_a_deleted_experiment_leaves_only_what_the_retention_keeps_and_its_id_starts_afresh(tmp_path):
    first = ExperimentConfig().replace(environment={"replicas": 1, "envs_per_replica": 4},
                                       buffer={"snapshot_interval_seconds": 0.5},
                                       learner={"learning_starts": 500, "batch_size": 32, "hidden_sizes": [64, 64]},
                                       stop={"max_env_steps": 10_000_000})
    with LocalCluster(tmp_path, environment_replicas=1, buffer_replicas=2) as cluster:
        api = experiment_stub(cluster)
        api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id="reused", config=to_proto(first)), timeout=60)
        trained = wait_for(lambda: (s := status_of(api, "reused")).policy_version >= 3 and s.episodes > 0 and s,
                             90, "the first experiment to train and report")
        wait_for(lambda: list(tmp_path.glob("buffer-*/*.npz")) and list(tmp_path.glob("policy-0/*.npz")), 30,
                   "snapshots of its replay and weights")

        done = subprocess.run([sys.executable, "-m", "kuberl.cli", "delete", "reused", "--address",
                               cluster.address("experiment"), "--tls-dir", str(cluster.admin.directory)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

        # Nothing is left in any role or on disk but what the retention keeps: the metrics, and
        # the result where one was evaluated (in the policy role's file).
        assert code_of(lambda: status_of(api, "reused")) == grpc.StatusCode.NOT_FOUND
        learner = stub(learner_grpc.LearnerServiceStub, cluster.address("learner"))
        assert code_of(lambda: learner.GetLearnerStats(learner_pb.GetLearnerStatsRequest(experiment_id="reused"),
                                                       timeout=10)) == grpc.StatusCode.NOT_FOUND
        for shard in cluster.replicas["buffer"]:
            assert code_of(lambda: stub(buffer_grpc.BufferServiceStub, shard.address).GetStats(
                buffer_pb.GetStatsRequest(experiment_id="reused"), timeout=10)) == grpc.StatusCode.NOT_FOUND
        policy = stub(policy_grpc.PolicyServiceStub, cluster.address("policy")).GetPolicy(
            policy_pb.GetPolicyRequest(experiment_id="reused", newer_than_version=-1), timeout=10)
        assert policy.latest_version == -1
        analytics = stub(analytics_grpc.AnalyticsServiceStub, cluster.address("analytics"))

        def returns(**query) -> analytics_pb.QueryMetricsResponse:
            return analytics.QueryMetrics(analytics_pb.QueryMetricsRequest(
                experiment_id="reused", metric="charts/episodic_return", **query), timeout=10)

        assert returns().total > 0
        kept = [r.experiment_id for r in stub(policy_grpc.PolicyServiceStub, cluster.address("policy")).ListResults(
            policy_pb.ListResultsRequest(), timeout=10).results]
        assert not list(tmp_path.glob("buffer-*/*.npz"))
        assert len(list(tmp_path.glob("policy-0/*.npz"))) == len(kept) and kept in ([], ["reused"])
        assert code_of(lambda: api.DeleteExperiment(exp_pb.DeleteExperimentRequest(experiment_id="reused"),
                                                    timeout=10)) == grpc.StatusCode.NOT_FOUND

        # The same id, another environment and other network sizes: a new experiment from zero.
        second = first.replace(env_id="Acrobot-v1", learner={"hidden_sizes": [32, 32]})
        restarted = time.time()
        api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id="reused", config=to_proto(second)),
                            timeout=60)
        fresh = wait_for(lambda: (s := status_of(api, "reused")).policy_version >= 1 and s, 90,
                           "the new experiment to train")
        assert fresh.env_id == "Acrobot-v1" and fresh.phase == exp_pb.EXPERIMENT_PHASE_RUNNING
        assert fresh.env_steps < trained.env_steps + 20_000 and fresh.policy_version < trained.policy_version + 50
        acrobot = wait_for(lambda: stub(policy_grpc.PolicyServiceStub, cluster.address("policy")).GetPolicy(
            policy_pb.GetPolicyRequest(experiment_id="reused", newer_than_version=-1), timeout=10), 30, "weights")
        assert unpack_weights(acrobot.weights)[0].shape == (6, 32)  # Acrobot's 6 observations, 32 hidden units
        # The old experiment's kept metrics and result went when the new one took the id.
        wait_for(lambda: returns().total > 0, 60, "the new experiment's first returns")
        assert returns(limit=1).points[0].timestamp >= restarted - 1.0
        held = [r for r in stub(policy_grpc.PolicyServiceStub, cluster.address("policy")).ListResults(
            policy_pb.ListResultsRequest(), timeout=10).results if r.experiment_id == "reused"]
        assert all(r.released_at_seconds == 0 for r in held), held  # none, or the new experiment's own
