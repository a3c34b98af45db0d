"""The Kubernetes cluster that the cluster tests (operator, chart, end-to-end) run against.

Which cluster, in this order:
1. `KUBERL_TEST_CONTEXT` names a context of your kubeconfig: that one, whatever it is.
2. The kubeconfig's current context when it is a kind cluster (`kind-*`) and answers.
3. The local cluster (tests/localcluster), where Go and root are available: started by
   `python -m tests.kube prepare` (tests/run.sh does it) or by the first test that needs it,
   and stopped again by whoever started it.
4. None: the cluster tests skip with the reason (and fail under KUBERL_REQUIRE_ALL=1).

A cluster of another kind is never used unless named: the tests create namespaces, install
the CRD and a Helm release, and a kubeconfig's current context may be somebody's production.

    python -m tests.kube prepare    # decide, build and start the local cluster if it is the one
    python -m tests.kube prepare-compose    # only build Compose v2, for a run of the docker suite
    python -m tests.kube cleanup    # stop the local cluster if `prepare` started it
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from kuberl.pki import write_private
from tests import tools

STARTED_MARKER = "started-by-tests"


@dataclass(frozen=True)
class Choice:
    kind: str  # "context" (a cluster of your kubeconfig), "local" or "none"
    detail: str  # the context's name, or why none


def _kubectl_binary() -> str:
    from tests.localcluster import build

    if build.KUBERNETES.built:
        return str(build.KUBERNETES.binary("kubectl"))
    return shutil.which("kubectl") or str(tools.kubectl_binary("1.37"))


def _answers(kubectl: str, context: str) -> bool:
    try:
        done = subprocess.run([kubectl, "--context", context, "version", "--request-timeout=5s"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose() -> Choice:
    from tests.localcluster import cluster

    explicit = os.environ.get("KUBERL_TEST_CONTEXT")
    kubectl = shutil.which("kubectl") or _kubectl_binary()
    if explicit:
        if _answers(kubectl, explicit):
            return Choice("context", explicit)
        return Choice("none", f"KUBERL_TEST_CONTEXT={explicit} does not answer")
    current = subprocess.run([kubectl, "config", "current-context"], capture_output=True, text=True, timeout=30)
    context = current.stdout.strip() if current.returncode == 0 else ""
    if context.startswith("kind-") and _answers(kubectl, context):
        return Choice("context", context)
    reason = cluster.why_not_runnable()
    if reason is None:
        return Choice("local", "")
    seen = f"the current context {context!r} is not a reachable kind cluster" if context else "no kube-context"
    return Choice("none", f"no cluster to test against: {seen}, and the local cluster cannot run here ({reason}); "
                          "set KUBERL_TEST_CONTEXT to use another cluster")


@dataclass
class TestCluster:
    """A cluster the tests may change: kubectl, Helm and the Python client bound to one context."""

    context: str
    kubeconfig: str | None  # None: the environment's ($KUBECONFIG or ~/.kube/config)
    kubectl_binary: str
    local_layout: object | None = None  # tests.localcluster.cluster.Layout for the local cluster

    __test__ = False  # not a test class, whatever its name

    @classmethod
    def for_choice(cls, choice: Choice) -> TestCluster:
        if choice.kind == "local":
            from tests.localcluster import cluster

            layout = cluster.Layout.default()
            return cls(cluster.CONTEXT, str(layout.kubeconfig), _kubectl_binary(), layout)
        return cls(choice.detail, None, shutil.which("kubectl") or _kubectl_binary())

    @property
    def is_kind(self) -> bool:
        return self.context.startswith("kind-")

    def _config_args(self) -> list[str]:
        return (["--kubeconfig", self.kubeconfig] if self.kubeconfig else []) + ["--context", self.context]

    def kubectl(self, *args: str, namespace: str | None = None, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        command = [self.kubectl_binary, *self._config_args(), *(["--namespace", namespace] if namespace else []),
                   *args]
        done = subprocess.run(command, capture_output=True, text=True, input=input, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def get_json(self, *args: str, namespace: str | None = None) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json", namespace=namespace).stdout)

    @contextlib.contextmanager
    def port_forward(self, target: str, port: int, namespace: str) -> Iterator[int]:
        """`kubectl port-forward TARGET :PORT` on loopback while the block runs; yields the local port."""
        process = subprocess.Popen([self.kubectl_binary, *self._config_args(), "--namespace", namespace,
                                    "port-forward", "--address", "127.0.0.1", target, f":{port}"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            line = process.stdout.readline()  # "Forwarding from 127.0.0.1:40123 -> 50056"
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not found:
                raise AssertionError(f"kubectl port-forward {target}: {line}{process.stdout.read()}")
            yield int(found.group(1))
        finally:
            process.terminate()
            process.wait(timeout=30)

    def tls_directory(self, secret: str, namespace: str, directory: Path) -> Path:
        """A kubernetes.io/tls Secret's files (ca.crt, tls.crt, tls.key) as a --tls-dir, as the
        README tells people to fetch the reader's."""
        return write_secret_files(self.get_json("secret", secret, namespace=namespace)["data"], directory)

    def apply(self, documents: list[dict], namespace: str | None = None, server_side: bool = True) -> str:
        extra = ["--server-side", "--field-manager=kuberl-tests"] if server_side else []
        return self.kubectl("apply", *extra, "-f", "-", namespace=namespace,
                            input=yaml.safe_dump_all(documents)).stdout

    def helm(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        kube_args = (["--kubeconfig", self.kubeconfig] if self.kubeconfig else []) + ["--kube-context", self.context]
        return tools.helm("4", *args, *kube_args, timeout=timeout, check=check)

    def api_client(self):
        """A Python client acting as the kubeconfig's user (the admin)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig, context=self.context)

    def service_account_kubeconfig(self, namespace: str, name: str, directory: Path) -> Path:
        """A kubeconfig whose user is the ServiceAccount (a TokenRequest token): code run with it
        has exactly the permissions RBAC gives that account."""
        token = self.kubectl("create", "token", name, "--duration=3h", namespace=namespace).stdout.strip()
        view = json.loads(self.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout)
        server = view["clusters"][0]["cluster"]
        user = f"system:serviceaccount:{namespace}:{name}"
        path = directory / f"{namespace}-{name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "c", "cluster": server}], "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": user, "namespace": namespace}}]}))
        path.chmod(0o600)
        return path

    def kill_container(self, pod: dict, container: str) -> None:
        """SIGKILLs a container's process through the node's runtime, as a crash would end it
        (from inside its pod, PID 1 cannot be killed)."""
        (status,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == container]
        container_id = status["containerID"].removeprefix("containerd://")
        if self.local_layout is not None:
            from tests.localcluster import cluster

            cluster.ctr(self.local_layout, "tasks", "kill", "--signal", "SIGKILL", container_id, timeout=30)
        elif self.is_kind:  # a kind node is a Docker container named after the node
            done = subprocess.run(["docker", "exec", pod["spec"]["nodeName"], "ctr", "--namespace", "k8s.io", "tasks",
                                   "kill", "--signal", "SIGKILL", container_id], capture_output=True, text=True,
                                  timeout=30)
            if done.returncode != 0:
                raise AssertionError(f"killing {container_id} failed: {done.stderr}")
        else:
            raise AssertionError(f"do not know how to reach the container runtime of {self.context}")

    def install_crd(self) -> None:
        """The chart's CRDs (crds/), applied as `helm install` applies them, and Established."""
        chart_crds = Path(__file__).resolve().parents[1] / "charts" / "kuberl" / "crds"
        for path in sorted(chart_crds.glob("*.yaml")):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
            name = yaml.safe_load(path.read_text())["metadata"]["name"]
            self.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")

    def wait_while_terminating(self, namespace: str) -> None:
        """Returns once `namespace` is not being deleted (an earlier run's teardown)."""
        phase = self.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}", check=False).stdout
        if phase == "Terminating":
            self.kubectl("wait", "--for=delete", f"namespace/{namespace}", "--timeout=180s", timeout=200)

    def ensure_namespace(self, name: str) -> None:
        """The namespace, made now unless it exists."""
        self.wait_while_terminating(name)
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])

    def load_image(self, tag: str) -> None:
        """Makes a Docker image available to the cluster's nodes without any registry."""
        if self.local_layout is not None:
            from tests.localcluster import images

            images.import_image(self.local_layout, tag)
        elif self.is_kind:
            done = subprocess.run(["kind", "load", "docker-image", tag, "--name", self.context.removeprefix("kind-")],
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise AssertionError(f"kind load docker-image {tag} failed:\n{done.stderr}")
        else:
            raise AssertionError(f"do not know how to put {tag} on the nodes of {self.context}: "
                                 "push it where that cluster pulls from")


CONFIGMAPS = ("v1", "ConfigMap")
SERVICES = ("v1", "Service")
PODS = ("v1", "Pod")
SECRETS = ("v1", "Secret")
EVENTS = ("v1", "Event")
NAMESPACES = ("v1", "Namespace")
def write_secret_files(data: dict[str, str], directory: Path) -> Path:
    """A Secret's data (base64, as the API server and `helm template` give it) as files; keys owner-only."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in data.items():
        path, raw = directory / name, base64.b64decode(value)
        if name.endswith(".key"):
            write_private(path, raw)
        else:
            path.write_bytes(raw)
    return directory


DEPLOYMENTS = ("apps/v1", "Deployment")
STATEFULSETS = ("apps/v1", "StatefulSet")
RLEXPERIMENTS = ("kuberl.dev/v1alpha1", "RLExperiment")


class Objects:
    """What the API server holds, read and changed as the kubeconfig's user (the admin), for
    tests to act and assert on; the code under test acts with identities of its own."""

    def __init__(self, cluster: TestCluster):
        from kubernetes.dynamic import DynamicClient

        self._client = DynamicClient(cluster.api_client())

    def _resource(self, kind: tuple[str, str]):
        return self._client.resources.get(api_version=kind[0], kind=kind[1])

    def get(self, kind: tuple[str, str], name: str, namespace: str | None = None) -> dict | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self._resource(kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def list(self, kind: tuple[str, str], namespace: str | None = None, selector: str | None = None) -> list[dict]:
        return self._resource(kind).get(namespace=namespace, label_selector=selector).to_dict()["items"]

    def create(self, kind: tuple[str, str], body: dict, namespace: str | None = None) -> dict:
        return self._resource(kind).create(body=body, namespace=namespace).to_dict()

    def patch(self, kind: tuple[str, str], name: str, body: dict, namespace: str | None = None,
              subresource: str | None = None) -> dict:
        resource = self._resource(kind)
        if subresource:
            resource = resource.subresources[subresource]
        return resource.patch(name=name, namespace=namespace, body=body,
                              content_type="application/merge-patch+json").to_dict()

    def delete(self, kind: tuple[str, str], name: str, namespace: str | None = None) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self._resource(kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            pass


def _marker():
    from tests.localcluster import cluster

    return cluster.Layout.default().root / STARTED_MARKER


def prepare() -> int:
    """tests/run.sh, before pytest: say which cluster, and build and start the local one when
    it is the one (outside pytest's per-test timeout: a cold build takes tens of minutes)."""
    choice = choose()
    if choice.kind == "context":
        print(f"[cluster] tests run against the kube-context {choice.detail}")
    elif choice.kind == "none":
        print(f"[cluster] {choice.detail}")
    else:
        from tests.localcluster import build, lifecycle

        started = time.monotonic()
        for component in (*build.CLUSTER_COMPONENTS, build.SKAFFOLD, build.COMPOSE):
            build.build(component)
        print(f"[cluster] stage build: {time.monotonic() - started:.0f}s (local cluster binaries, skaffold and "
              "Compose v2)")
        started = time.monotonic()
        layout, started_now = lifecycle.ensure_up()
        if started_now:
            (layout.root / STARTED_MARKER).write_text(str(os.getpid()))
        print(f"[cluster] stage cluster start: {time.monotonic() - started:.0f}s "
              f"({'started' if started_now else 'already running'}; KUBECONFIG={layout.kubeconfig})")
    sys.stdout.flush()
    return 0


def prepare_compose() -> int:
    """tests/run.sh, before a run of the docker suite without the cluster suites: build Compose v2
    (cached per machine) outside pytest's per-test timeout, as `prepare` does with the rest. A
    machine that cannot build it leaves the test to use a `docker compose` plugin or say why not."""
    from tests.localcluster import build

    reason = build.why_not_buildable()
    if reason:
        print(f"[cluster] Compose v2 not built: {reason}")
    else:
        started = time.monotonic()
        build.build(build.COMPOSE)
        print(f"[cluster] stage build: {time.monotonic() - started:.0f}s (Compose v2)")
    sys.stdout.flush()
    return 0


def cleanup() -> int:
    marker = _marker()
    if marker.exists():
        from tests.localcluster import cluster

        started = time.monotonic()
        cluster.down(cluster.Layout.default())
        marker.unlink(missing_ok=True)
        print(f"[cluster] stage cluster stop: {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    actions = {"prepare": prepare, "prepare-compose": prepare_compose, "cleanup": cleanup}
    if len(sys.argv) != 2 or sys.argv[1] not in actions:
        sys.exit(f"usage: python -m tests.kube {{{','.join(actions)}}}")
    sys.exit(actions[sys.argv[1]]())
