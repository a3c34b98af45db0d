"""Every role as its own container on a user-defined Docker network. Replicas of a role share a
network alias, so Docker's embedded DNS answers the alias with every replica's address, the
same shape as a headless Service's name in Kubernetes."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from kuberl.roles import DEFAULT_PORTS
from tests.docker.engine import docker

PEERS = ["--environment", "environment:50050", "--buffer", "buffer:50051", "--analytics", "analytics:50052",
         "--learner", "learner:50054", "--policy", "policy:50056"]


@dataclass
class ContainerCluster:
    image: str
    prefix: str = field(default_factory=lambda: f"kuberl-{uuid.uuid4().hex[:6]}")
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def network(self) -> str:
        return self.prefix

    def __enter__(self) -> ContainerCluster:
        docker("network", "create", self.network, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.containers:
            docker("rm", "-f", name, timeout=60, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, timeout=60, check=False)
        docker("network", "rm", self.network, timeout=60, check=False)

    def run(self, role: str, index: int = 0, *extra: str) -> str:
        """Starts one replica of a role, its port published on a free loopback port."""
        name = f"{self.prefix}-{role}-{index}"
        port = DEFAULT_PORTS[role]
        mounts: list[str] = []
        if role == "buffer":  # its snapshots outlive the container
            volume = f"{name}-data"
            self.volumes.append(volume)
            mounts = ["--volume", f"{volume}:/var/lib/kuberl"]
        docker("run", "--detach", "--name", name, "--network", self.network, "--network-alias", role,
               "--publish", f"127.0.0.1::{port}", "--env", f"KUBERL_NODE_NAME={role}-{index}", *mounts,
               self.image, "serve", role, "--insecure", "--port", str(port), "--data-dir", "/var/lib/kuberl",
               "--database", "sqlite:////var/lib/kuberl/analytics.db", *PEERS, *extra, timeout=120)
        self.containers.append(name)
        return name

    def role(self, name: str) -> str:
        return name.removeprefix(f"{self.prefix}-").rsplit("-", 1)[0]

    def address(self, name: str) -> str:
        """The host address of a container's gRPC port (it changes when the container restarts)."""
        mapped = docker("port", name, f"{DEFAULT_PORTS[self.role(name)]}/tcp", timeout=30).stdout.decode().split()[0]
        return mapped

    def ip(self, name: str) -> str:
        networks = json.loads(docker("inspect", name, "--format", "{{json .NetworkSettings.Networks}}",
                                     timeout=30).stdout)
        return networks[self.network]["IPAddress"]

    def logs(self, name: str) -> str:
        done = docker("logs", name, timeout=30, check=False)
        return (done.stdout + done.stderr).decode(errors="replace")
