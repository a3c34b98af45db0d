"""The experiment role over real processes: round-robin over actors, Stop reaches the owner, errors."""

from __future__ import annotations

import grpc
import pytest

from kuberl.config import ExperimentConfig, to_proto
from kuberl.local import LocalCluster, experiment_stub
from kuberl.rpc import stub
from kuberl.v1 import environment_service_pb2 as env_pb
from kuberl.v1 import environment_service_pb2_grpc as env_grpc
from kuberl.v1 import experiment_service_pb2 as exp_pb

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

        with pytest.raises(grpc.RpcError) as err:
            api.GetExperimentStatus(exp_pb.GetExperimentStatusRequest(experiment_id="nope"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        continuous = to_proto(config)
        continuous.env_id = "Pendulum-v1"
        with pytest.raises(grpc.RpcError) as err:
            api.StartExperiment(exp_pb.StartExperimentRequest(config=continuous), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Discrete" in err.value.details()
