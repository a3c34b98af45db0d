"""compose.yaml as the seed used it: `up --build --scale environment=2 --scale buffer=3`, an
experiment solved through the experiment API, both actors and every shard used. Run with Docker
Compose v2, built here from its Go module (Debian 12 packages only 1.29)."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

from kuberl.config import load_manifest, to_proto
from kuberl.local import free_port
from kuberl.rpc import stub, use_tls, wait_until_serving
from kuberl.security import TlsFiles
from kuberl.v1 import experiment_service_pb2 as exp_pb
from kuberl.v1 import experiment_service_pb2_grpc as exp_grpc
from tests.conftest import REPO, skip_or_fail
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

# Inside the network: every replica of every role in DNS and serving (what a headless Service's
# readiness gives in a cluster) before the experiment starts.
ALL_SERVING = """
import time
from kuberl.discovery import resolve
from kuberl.rpc import use_tls, wait_until_serving
from pathlib import Path
from kuberl.security import TlsFiles
use_tls(TlsFiles(Path("/pki/admin")))
for role, port, count in (("environment", 50050, 2), ("buffer", 50051, 3), ("analytics", 50052, 1),
                          ("learner", 50054, 1), ("policy", 50056, 1)):
    deadline = time.monotonic() + 120
    while len(resolve(f"{role}:{port}")) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    for address in resolve(f"{role}:{port}"):
        wait_until_serving(address, 120, role)
print("serving")
"""

SHARD_STATS = """
import json
from kuberl.discovery import Discovery
from kuberl.rpc import stub, use_tls
from pathlib import Path
from kuberl.security import TlsFiles
from kuberl.v1 import buffer_service_pb2 as pb, buffer_service_pb2_grpc as pb_grpc
use_tls(TlsFiles(Path("/pki/admin")))
stats = [stub(pb_grpc.BufferServiceStub, a).GetStats(pb.GetStatsRequest(experiment_id="cartpole"), timeout=10).stats
         for a in Discovery("buffer:50051").addresses()]
print(json.dumps([{"total_inserted": s.total_inserted, "total_sampled": s.total_sampled} for s in stats]))
"""


def compose_command() -> list[str]:
    """Compose v2: the build of its Go module (cached per machine, as the cluster's binaries are),
    else the `docker compose` plugin of a machine that cannot build it."""
    from tests.localcluster import build

    if build.COMPOSE.built or not build.why_not_buildable():
        return [str(build.build(build.COMPOSE) / "docker-compose")]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    skip_or_fail(f"no Compose v2: no `docker compose` plugin, and it cannot be built ({build.why_not_buildable()})")


def test_compose_up_scaled_solves_cartpole_on_every_replica(base_image, tmp_path):
    project = f"kuberl-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {"BASE_IMAGE": base_image, "KUBERL_COMPOSE_PKI": str(tmp_path / "pki"), "KUBERL_HOST_UID": "10001",
           "KUBERL_EXPERIMENT_PORT": str(port), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    compose = [*compose_command(), "--project-name", project, "--file", str(REPO / "compose.yaml")]

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        done = subprocess.run([*compose, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    version = run("version", "--short").stdout.strip()
    print(f"\n[compose] {' '.join(compose[:1])} {version}")
    assert version.lstrip("v").startswith("2."), f"Compose v2, not {version}"

    before = use_tls(TlsFiles(tmp_path / "pki" / "admin"))
    try:
        run("up", "--build", "--detach", "--scale", "environment=2", "--scale", "buffer=3")
        address = f"127.0.0.1:{port}"
        wait_until_serving(address, 120, "experiment")
        assert run("exec", "-T", "experiment", "python", "-c", ALL_SERVING).stdout.strip() == "serving"
        config = load_manifest(REPO / "examples" / "cartpole.yaml").config.replace(
            environment={"replicas": 2}, buffer={"replicas": 3, "prioritized": False})
        api = stub(exp_grpc.ExperimentServiceStub, address)
        reply = api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id="cartpole", config=to_proto(config)),
                                    timeout=60)
        assert len(set(reply.environment_replicas)) == 2, "both actor containers, found through the service name"

        def finished() -> exp_pb.ExperimentStatus | None:
            s = api.GetExperimentStatus(exp_pb.GetExperimentStatusRequest(experiment_id="cartpole"), timeout=10).status
            return s if s.phase not in (exp_pb.EXPERIMENT_PHASE_PENDING, exp_pb.EXPERIMENT_PHASE_RUNNING) else None

        status = wait_for(finished, 600, "cartpole to finish")
        assert status.phase == exp_pb.EXPERIMENT_PHASE_SUCCEEDED and status.result_return >= 475, status
        # Every shard (the three addresses the service name resolves to inside the network) was
        # filled by the actors and sampled by the learner; asked from inside, as an admin.
        shards = json.loads(run("exec", "-T", "experiment", "python", "-c", SHARD_STATS).stdout)
        assert len(shards) == 3, shards
        assert all(s["total_inserted"] > 0 and s["total_sampled"] > 0 for s in shards), shards
    except BaseException:  # the roles' own account of what went wrong, beside the assertion
        logs = subprocess.run([*compose, "logs", "--no-color", "--tail", "40"], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=120)
        print(f"\n[compose] logs:\n{logs.stdout[-8000:]}{logs.stderr[-2000:]}")
        raise
    finally:
        use_tls(before)
        subprocess.run([*compose, "down", "--volumes", "--remove-orphans", "--timeout", "5"], capture_output=True,
                       env=env, cwd=REPO, timeout=300)
