"""skaffold.yaml run by skaffold itself (built from its Go module): `skaffold dev` deploys the
chart with the images it built, rebuilds and redeploys after a change, forwards the experiment
API to the machine (`kuberl status` answers through it), and cleans up on Ctrl-C. (`skaffold run`
is the same build and deploy without the watch; a test of its own cost 80 s of the suite.)
Against the local cluster the `localcluster` profile imports the images into its containerd;
against kind, the `kind` profile loads them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests import tools
from tests.conftest import REPO, skip_or_fail
from tests.kube import TestCluster
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
SKAFFOLD_NAMESPACE = "kuberl"  # skaffold.yaml's release namespace


@pytest.fixture(scope="module")
def skaffold(kube_cluster: TestCluster, project_image, tmp_path_factory: pytest.TempPathFactory):
    """The skaffold binary, its environment, and a working copy of the repository to run (and
    change) it in."""
    from tests.localcluster import build

    if not build.SKAFFOLD.built and build.why_not_buildable():
        skip_or_fail(f"no skaffold: none is built here and {build.why_not_buildable()}")
    binary = build.build(build.SKAFFOLD) / "skaffold"
    work = tmp_path_factory.mktemp("skaffold") / "kuberl"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    for name in listed:
        if (REPO / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, work / name)
    # skaffold drives Helm 3 (it parses `helm version`) and kubectl; Docker builds the images.
    helm3 = tools.helm_binaries()["helm3"].parent
    env = {**os.environ, "PATH": os.pathsep.join([str(helm3), str(Path(kube_cluster.kubectl_binary).parent),
                                                  os.environ["PATH"]]),
           "SKAFFOLD_UPDATE_CHECK": "false", "SKAFFOLD_INTERACTIVE": "false",
           # skaffold's own config and cache apart from the user's; ours where they are.
           "HOME": str(tmp_path_factory.mktemp("skaffold-home")), "KUBERL_CLUSTER_CACHE": str(build.cache_root()),
           "KUBERL_TOOLS_DIR": str(tools.tools_dir())}
    if kube_cluster.kubeconfig:
        env["KUBECONFIG"] = kube_cluster.kubeconfig
    kube_args = ["--kube-context", kube_cluster.context]
    kube_cluster.wait_while_terminating(SKAFFOLD_NAMESPACE)
    yield binary, work, env, kube_args
    subprocess.run([str(binary), "delete", *kube_args], cwd=work, env=env, capture_output=True, timeout=600)
    kube_cluster.kubectl("delete", "namespace", SKAFFOLD_NAMESPACE, "--wait=false", check=False)


def assert_the_chart_got_the_image_skaffold_built(cluster: TestCluster) -> str:
    """The operator's image, after checking it is skaffold's tag and what the operator hands on."""
    deployment = cluster.get_json("deployment", "kuberl-operator", namespace=SKAFFOLD_NAMESPACE)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    image = container["image"]
    assert re.fullmatch(r"kuberl:[0-9a-f]{64}", image), image  # skaffold's tag, handed to the chart
    # The operator hands the same image to the experiments it creates.
    assert {e["name"]: e.get("value") for e in container["env"]}["KUBERL_IMAGE"] == image
    return image


class Output:
    """A process's combined output, collected by a thread so the test can wait for a line."""

    def __init__(self, process: subprocess.Popen):
        self.text = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._lock:
                self.text += line

    def count(self, needle: str) -> int:
        with self._lock:
            return self.text.count(needle)

    def search(self, pattern: str) -> re.Match | None:
        with self._lock:
            return re.search(pattern, self.text)


def test_skaffold_dev_rebuilds_after_a_change_forwards_the_api_and_cleans_up(skaffold, kube_cluster: TestCluster):
    binary, work, env, kube_args = skaffold
    process = subprocess.Popen([str(binary), "dev", *kube_args, "--cache-artifacts=false", "--port-forward=user"], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = Output(process)
    try:
        wait_for(lambda: output.count("Watching for changes") >= 1, 900, "the first deploy", interval=1.0)
        assert output.count("Deployments stabilized") >= 1
        first = assert_the_chart_got_the_image_skaffold_built(kube_cluster)
        forwarded = wait_for(lambda: output.search(r"service/kuberl-experiment in namespace kuberl, remote port 50053"
                                                   r" -> (?:http://)?127\.0\.0\.1:(\d+)"), 60, "the port-forward")
        reader = kube_cluster.tls_directory("kuberl-reader-tls", SKAFFOLD_NAMESPACE, work.parent / "reader-tls")
        status = subprocess.run([shutil.which("kuberl") or "kuberl", "status", "--address",
                                 f"127.0.0.1:{forwarded.group(1)}", "--timeout", "30", "--tls-dir", str(reader)],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr

        changed = work / "services" / "kuberl" / "__init__.py"
        changed.write_text(changed.read_text() + "\n# a change for skaffold dev to pick up\n")
        wait_for(lambda: output.count("Watching for changes") >= 2, 900, "the rebuild and redeploy", interval=1.0)
        assert output.count("Build [kuberl] succeeded") >= 2
        second = assert_the_chart_got_the_image_skaffold_built(kube_cluster)
        assert second != first, "the redeploy kept the old image"
        wait_for(lambda: kube_cluster.get_json("deployment", "kuberl-operator", namespace=SKAFFOLD_NAMESPACE)
                 ["status"].get("updatedReplicas") == 1 and kube_cluster.get_json(
                     "deployment", "kuberl-operator", namespace=SKAFFOLD_NAMESPACE)["status"].get("readyReplicas") == 1,
                 180, "the operator on the new image")
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: skaffold dev deletes what it deployed
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert kube_cluster.kubectl("get", "deployment", "kuberl-operator", namespace=SKAFFOLD_NAMESPACE,
                                check=False).returncode != 0, "skaffold dev left its release behind"
