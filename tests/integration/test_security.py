"""Mutual TLS and the authorization table on every role, as real processes on real sockets:
a plaintext client or a stranger's certificate reaches no handler; every (identity, method)
pair is answered as the table says; random bytes and hostile well-formed messages to every
method get a deliberate status and leave every server healthy."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor as descriptor_mod
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kuberl import rpc
from kuberl.exitcodes import ExitCode
from kuberl.local import LocalCluster
from kuberl.pki import make_authority
from kuberl.roles import SERVICES
from kuberl.security import (AUTHORIZATION, IDENTITIES, PER_EXPERIMENT_ROLES, Denied, Identity, TlsFiles, authority_in,
                             authorize, issue_identity, named_experiments)
from tests.fuzzing import DELIBERATE, call, hostile, message_class, methods
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

OURS = "e1"


def minimal_request(method: descriptor_mod.MethodDescriptor, experiment_id: str):
    request = message_class(method.input_type)()
    fields = request.DESCRIPTOR.fields_by_name
    if "experiment_id" in fields:
        request.experiment_id = experiment_id
    if "points" in fields:
        request.points.add(experiment_id=experiment_id, metric="charts/probe", value=1.0)
    return request


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """Every role (pool mode, one replica each) behind mutual TLS, and a TLS directory for each
    identity: every role-wide one, and each per-experiment role scoped to OURS."""
    workdir = tmp_path_factory.mktemp("secure")
    with LocalCluster(workdir, environment_replicas=1, buffer_replicas=1) as cluster:
        authority = authority_in(workdir / "tls")
        identities = [Identity(name) for name in IDENTITIES] + [Identity(r, OURS) for r in PER_EXPERIMENT_ROLES]
        tls = {identity: issue_identity(authority, workdir / "clients" / f"{identity.role}-{i}", identity)
               for i, identity in enumerate(identities)}
        yield cluster, tls


def assert_all_serving(cluster: LocalCluster, admin: TlsFiles) -> None:
    for role, replicas in cluster.replicas.items():
        for replica in replicas:
            channel = rpc.channel(replica.address, role, admin)
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, replica.name
            channel.close()


def test_a_plaintext_client_reaches_no_handler(system):
    cluster, _ = system
    for role, name, method in methods():
        channel = grpc.insecure_channel(cluster.address(role))
        assert call(channel, method, b"") == grpc.StatusCode.UNAVAILABLE, name
        channel.close()


def test_a_certificate_from_another_authority_reaches_no_handler(system, tmp_path):
    cluster, _ = system
    stranger = issue_identity(make_authority(tmp_path, "ca", "not kuberl's CA"), tmp_path / "admin", Identity("admin"))
    for role in SERVICES:
        channel = rpc.channel(cluster.address(role), role, stranger)
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, role
        channel.close()


def test_the_table_covers_every_method_and_states_the_design():
    assert {name for _, name, _ in methods()} <= set(AUTHORIZATION)
    ours, theirs = (OURS,), ("e2",)
    must = [(Identity("environment", OURS), "/kuberl.v1.BufferService/PushTransitions", ours),
            (Identity("learner", OURS), "/kuberl.v1.BufferService/SampleBatch", ours),
            (Identity("learner", OURS), "/kuberl.v1.PolicyService/UpdatePolicy", ours),
            (Identity("environment", OURS), "/kuberl.v1.PolicyService/GetPolicy", ours),
            (Identity("experiment"), "/kuberl.v1.LearnerService/StartTraining", ours),
            (Identity("reader"), "/kuberl.v1.ExperimentService/ListExperiments", None),
            (Identity("operator"), "/kuberl.v1.PolicyService/ReleaseExperiment", ours),
            (Identity("buffer", OURS), "/kuberl.v1.AnalyticsService/ReportMetrics", ours)]
    never = [(Identity("environment", OURS), "/kuberl.v1.BufferService/PushTransitions", theirs),
             (Identity("environment", OURS), "/kuberl.v1.PolicyService/UpdatePolicy", ours),
             (Identity("environment", OURS), "/kuberl.v1.BufferService/SampleBatch", ours),
             (Identity("learner", OURS), "/kuberl.v1.BufferService/PushTransitions", ours),
             (Identity("learner", OURS), "/kuberl.v1.PolicyService/UpdatePolicy", theirs),
             (Identity("learner", OURS), "/kuberl.v1.LearnerService/TrainStep", ours),
             (Identity("reader"), "/kuberl.v1.ExperimentService/StopExperiment", ours),
             (Identity("reader"), "/kuberl.v1.PolicyService/UpdatePolicy", ours),
             (Identity("operator"), "/kuberl.v1.ExperimentService/StartExperiment", ours),
             (Identity("policy"), "/kuberl.v1.EnvironmentService/StartRollout", ours),
             (Identity("buffer", OURS), "/kuberl.v1.AnalyticsService/ReportMetrics", (OURS, "e2"))]
    for identity, method, experiments in must:
        authorize(identity, method, experiments)
    for identity, method, experiments in never:
        with pytest.raises(Denied):
            authorize(identity, method, experiments)


def test_every_identity_and_method_is_answered_as_the_table_says(system):
    cluster, tls = system
    checked = 0
    for identity, files in tls.items():
        for role in SERVICES:
            channel = rpc.channel(cluster.address(role), role, files)
            for _, name, method in (m for m in methods() if m[0] == role):
                for experiment in {identity.experiment_id or OURS, "e2"}:
                    request = minimal_request(method, experiment)
                    try:
                        authorize(identity, name, named_experiments(request))
                        allowed = True
                    except Denied:
                        allowed = False
                    code = call(channel, method, request.SerializeToString())
                    if allowed:
                        assert code in DELIBERATE, (str(identity), name, experiment, code)
                    else:
                        assert code == grpc.StatusCode.PERMISSION_DENIED, (str(identity), name, experiment, code)
                    checked += 1
            channel.close()
    assert checked >= len(tls) * len(methods())


def test_random_bytes_and_hostile_messages_get_deliberate_answers(system):
    cluster, tls = system
    admin = cluster.admin
    rng = np.random.default_rng(11)
    for role, name, method in methods():
        channel = rpc.channel(cluster.address(role), role, admin)
        for _ in range(12):
            garbage = rng.bytes(int(rng.integers(1, 300)))
            assert call(channel, method, garbage) in DELIBERATE, (name, garbage)
        for _ in range(25):
            message = hostile(method.input_type, rng)
            assert call(channel, method, message.SerializeToString()) in DELIBERATE, (name, message)
        channel.close()
    assert_all_serving(cluster, admin)


def test_the_cli_reads_as_a_reader_is_refused_writes_and_says_what_plaintext_lacks(system):
    import subprocess
    import sys

    cluster, tls = system
    reader = tls[Identity("reader")].directory
    address = cluster.address("experiment")

    def kuberl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kuberl.cli", *args, "--address", address], capture_output=True,
                              text=True, timeout=60)

    listed = kuberl("status", "--tls-dir", str(reader))
    assert listed.returncode == 0 and listed.stdout.startswith("EXPERIMENT"), listed.stderr
    # Failed calls: exit code API_FAILED, the reason on stderr, nothing on stdout.
    refused = kuberl("delete", "anything", "--tls-dir", str(reader))
    assert refused.returncode == ExitCode.API_FAILED and "PERMISSION_DENIED" in refused.stderr
    plaintext = kuberl("status")
    assert plaintext.returncode == ExitCode.API_FAILED and "pass --tls-dir" in plaintext.stderr
    assert not plaintext.stdout and not refused.stdout


def test_the_health_port_answers_probes_in_plaintext_and_serves_nothing_else(tmp_path):
    import subprocess
    import sys

    from kuberl.local import free_port
    from kuberl.v1 import policy_service_pb2, policy_service_pb2_grpc

    authority = authority_in(tmp_path / "ca")
    tls = issue_identity(authority, tmp_path / "policy", Identity("policy"))
    port, health_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "kuberl.cli", "serve", "policy", "--port", str(port),
                                "--health-port", str(health_port), "--tls-dir", str(tls.directory),
                                "--data-dir", str(tmp_path / "data")])
    try:
        probe = grpc.insecure_channel(f"127.0.0.1:{health_port}")
        reply = wait_for(lambda: _health(probe), 30, "the health port")
        assert reply == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:  # no data through it
            policy_service_pb2_grpc.PolicyServiceStub(probe).GetPolicy(
                policy_service_pb2.GetPolicyRequest(experiment_id="e1"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as err:  # and the service port still wants a certificate
            health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}")).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        process.terminate()
        process.wait(timeout=30)


def _health(channel: grpc.Channel):
    try:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
    except grpc.RpcError:
        return None


def test_a_certificate_naming_its_role_by_dns_alone_is_that_role():
    from kuberl.security import identity_of

    assert identity_of(["policy.kuberl"]) == Identity("policy")
    assert identity_of(["reader.kuberl", "spiffe://kuberl.dev/environment/experiment/e1"]) == Identity(
        "environment", "e1")  # the URI wins
    assert identity_of(["policy.kuberl", "analytics.kuberl"]) is None
    assert identity_of(["policy.example.com"]) is None
    assert identity_of(["nobody.kuberl"]) is None


def test_a_control_service_refuses_a_large_request_before_reading_it(system):
    cluster, _ = system
    from kuberl.v1 import learner_service_pb2 as pb
    from kuberl.v1 import learner_service_pb2_grpc as pb_grpc

    big = pb.TrainStepRequest(experiment_id="x" * 100, num_updates=1)
    big.config.env_id = "x" * (2 << 20)  # 2 MiB: a learner takes no request near that
    with rpc.channel(cluster.address("learner"), "learner", cluster.admin) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.LearnerServiceStub(channel).TrainStep(big, timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in err.value.details()  # gRPC's own limit, not the handler's check
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
