"""The whole system as containers with DNS discovery: 2 actor and 3 shard containers behind one
alias each, a CartPole experiment solved through the experiment API, then faults: a shard
stopped and restored from its volume, the learner killed and resumed, a fourth shard added."""

from __future__ import annotations

import time

import grpc
import pytest

from kuberl.config import load_manifest, to_proto
from kuberl.rpc import stub, wait_until_serving
from kuberl.v1 import buffer_service_pb2 as buffer_pb
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc
from kuberl.v1 import experiment_service_pb2 as exp_pb
from kuberl.v1 import experiment_service_pb2_grpc as exp_grpc
from kuberl.v1 import learner_service_pb2 as learner_pb
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc
from tests.conftest import REPO
from tests.docker.cluster import ContainerCluster
from tests.docker.engine import docker

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except grpc.RpcError as err:  # a replica starting or restarting
            last_error = err
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last_error})")


@pytest.fixture(scope="module")
def cluster(project_image):
    with ContainerCluster(project_image) as c:
        for role in ("analytics", "policy", "learner", "experiment"):
            c.run(role)
        c.environments = [c.run("environment", i) for i in range(2)]
        c.buffers = [c.run("buffer", i) for i in range(3)]
        for name in c.containers:  # every replica in DNS and serving before anything starts
            wait_until_serving(c.address(name), timeout=60, role=c.role(name))
        yield c


def experiment_api(c: ContainerCluster) -> exp_grpc.ExperimentServiceStub:
    return stub(exp_grpc.ExperimentServiceStub, c.address(f"{c.prefix}-experiment-0"))


def shard_stats(c: ContainerCluster, name: str, experiment_id: str) -> buffer_pb.ReplayStats:
    return stub(buffer_grpc.BufferServiceStub, c.address(name)).GetStats(
        buffer_pb.GetStatsRequest(experiment_id=experiment_id), timeout=5).stats


def learner_stats(c: ContainerCluster, experiment_id: str) -> learner_pb.LearnerStats:
    return stub(learner_grpc.LearnerServiceStub, c.address(f"{c.prefix}-learner-0")).GetLearnerStats(
        learner_pb.GetLearnerStatsRequest(experiment_id=experiment_id), timeout=5).stats


def start(c: ContainerCluster, experiment_id: str, **changes) -> exp_pb.StartExperimentResponse:
    sections = {"environment": {"replicas": 2}, "buffer": {"replicas": 3}}
    for key, value in changes.items():
        sections[key] = {**sections.get(key, {}), **value} if isinstance(value, dict) else value
    config = load_manifest(REPO / "examples" / "cartpole.yaml").config.replace(**sections)
    api = wait_for(lambda: experiment_api(c), 60, "the experiment API")
    return wait_for(lambda: api.StartExperiment(exp_pb.StartExperimentRequest(
        experiment_id=experiment_id, config=to_proto(config)), timeout=60), 60, "StartExperiment")


def draws_expected_by_size(polls: list[list[buffer_pb.ReplayStats]]) -> list[float]:
    """Each shard's share of the draws between two polls, by its mean size over that interval."""
    expected = [0.0] * len(polls[0])
    for before, after in zip(polls, polls[1:]):
        drawn = sum(s.total_sampled for s in after) - sum(s.total_sampled for s in before)
        sizes = [(b.size + a.size) / 2 for b, a in zip(before, after)]
        if drawn and sum(sizes):
            expected = [e + drawn * size / sum(sizes) for e, size in zip(expected, sizes)]
    return expected


def test_cartpole_is_solved_across_containers_through_dns(cluster):
    c = cluster
    # Uniform replay: split-merge then samples each shard by its size, which this test checks
    # (prioritized replay, by priority mass, has its own test over real processes).
    reply = start(c, "cartpole", seed=5, stop={"max_env_steps": 300_000},  # the budget: far above the ~10-40k it takes
                  buffer={"prioritized": False})
    # Both actor containers, found through the one alias, run it.
    assert sorted(reply.environment_replicas) == sorted(f"{c.ip(name)}:50050" for name in c.environments)

    api = experiment_api(c)
    # Split-merge draws from each shard in proportion to what it holds at the time, so the shares
    # to expect are integrated over the run from the shards' sizes, polled while it runs.
    polls: list[list[buffer_pb.ReplayStats]] = []

    def finished():
        polls.append([shard_stats(c, name, "cartpole") for name in c.buffers])
        status = api.GetExperimentStatus(exp_pb.GetExperimentStatusRequest(experiment_id="cartpole"),
                                         timeout=10).status
        return status.phase not in (exp_pb.EXPERIMENT_PHASE_PENDING, exp_pb.EXPERIMENT_PHASE_RUNNING) and status

    status = wait_for(finished, 600, "cartpole to finish")
    assert status.phase == exp_pb.EXPERIMENT_PHASE_SUCCEEDED, status
    assert status.eval_return >= 475

    # Round-robin per batch filled every shard about evenly: a push a shard holds back goes to
    # the next one, so a slow run (a loaded machine) drifts by some pushes; seen: 35 263, 31 675,
    # 35 274.
    stats = [shard_stats(c, name, "cartpole") for name in c.buffers]
    inserted = [s.total_inserted for s in stats]
    push = load_manifest(REPO / "examples" / "cartpole.yaml").config.environment.push_batch_size
    assert min(inserted) > 0 and max(inserted) - min(inserted) <= max(2 * len(c.environments) * push,
                                                                      0.2 * max(inserted)), inserted
    # A shard that lagged early is drawn from less early, which final counts alone would call a
    # fault (seen: sampled 24% from a shard that ended with 30% of the inserts).
    sampled = [last.total_sampled - first.total_sampled for first, last in zip(polls[0], polls[-1])]
    assert min(sampled) > 0, sampled
    for taken, expected in zip(sampled, draws_expected_by_size(polls)):
        assert 0.8 < taken / expected < 1.25, (sampled, draws_expected_by_size(polls))
    assert learner_stats(c, "cartpole").shards == 3


def test_faults_a_stopped_shard_a_killed_learner_and_a_new_shard(cluster):
    c = cluster
    start(c, "faults", seed=6, buffer={"replicas": 3, "capacity": 50_000, "snapshot_interval_seconds": 1.0},
          learner={"samples_per_insert": 8}, stop={"target_return": 100_000, "max_env_steps": 100_000_000})
    wait_for(lambda: min(shard_stats(c, name, "faults").size for name in c.buffers) >= 2_000, 120,
             "every shard to hold 2 000 transitions")

    # A shard stops (SIGTERM: it writes a last snapshot to its volume); the learner carries on.
    victim = c.buffers[2]
    docker("stop", "--time", "20", victim, timeout=60)
    assert c.logs(victim).rstrip().endswith("stopped"), "a graceful stop, with a last snapshot"
    updates = learner_stats(c, "faults").updates
    wait_for(lambda: learner_stats(c, "faults").updates > updates + 500, 60, "the learner to carry on")
    docker("start", victim, timeout=60)
    restored = wait_for(lambda: shard_stats(c, victim, "faults"), 60, "the restarted shard")
    assert restored.size >= 2_000, "its transitions came back from the volume"
    assert "restored" in c.logs(victim)

    # The learner is killed; started again it resumes from the policy role's newest weights.
    version_before = learner_stats(c, "faults").policy_version
    docker("kill", f"{c.prefix}-learner-0", timeout=60)
    docker("start", f"{c.prefix}-learner-0", timeout=60)
    resumed = wait_for(lambda: learner_stats(c, "faults"), 60, "training to start again")
    assert resumed.policy_version >= version_before
    assert "resumed from policy version" in c.logs(f"{c.prefix}-learner-0")
    updates = resumed.updates
    wait_for(lambda: learner_stats(c, "faults").updates > updates + 500, 60, "the resumed learner to train")

    # A fourth shard joins the alias: discovered and used without restarting anything.
    c.buffers.append(c.run("buffer", 3))
    wait_for(lambda: shard_stats(c, c.buffers[3], "faults").total_inserted > 0, 60, "actors to push to shard 4")
    wait_for(lambda: shard_stats(c, c.buffers[3], "faults").total_sampled > 0, 60, "the learner to sample shard 4")
    assert learner_stats(c, "faults").shards == 4

    status = experiment_api(c).StopExperiment(exp_pb.StopExperimentRequest(experiment_id="faults"), timeout=60).status
    assert status.phase == exp_pb.EXPERIMENT_PHASE_STOPPED


def test_experiments_spread_over_actor_containers(cluster):
    c = cluster
    owners = [start(c, f"spread-{i}", environment={"replicas": 1},
                    stop={"max_env_steps": 2_000}).environment_replicas[0] for i in range(2)]
    assert sorted(owners) == sorted(f"{c.ip(name)}:50050" for name in c.environments)
