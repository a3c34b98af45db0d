"""The live dashboard in headless Chromium (Debian's `chromium`) during a real run: the page
loads, lists the experiment, and its curves gain points; a screenshot is kept."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from kuberl.config import ExperimentConfig, to_proto
from kuberl.local import LocalCluster, experiment_stub, free_port
from kuberl.v1 import experiment_service_pb2 as exp_pb
from tests.conftest import skip_or_fail
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        skip_or_fail("no chromium (Debian: apt-get install chromium)")
    return found


def render(browser: str, url: str, *extra: str) -> str:
    """The page's DOM after ~6 s of its own time (three polls), as headless Chromium built it."""
    done = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100",
                           "--virtual-time-budget=6000", *extra, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def points(dom: str, experiment_id: str) -> dict[str, int]:
    return {metric: int(n) for metric, n in re.findall(
        rf'class="curve" data-experiment="{re.escape(experiment_id)}" data-metric="([^"]+)" data-points="(\d+)"', dom)}


def test_the_dashboard_shows_a_running_experiment_and_its_curves_grow(tmp_path):
    browser = chromium()
    port = free_port()
    config = ExperimentConfig().replace(environment={"replicas": 1, "envs_per_replica": 4},
                                        learner={"learning_starts": 500, "samples_per_insert": 4},
                                        stop={"max_env_steps": 10**7, "eval_interval_updates": 300, "eval_episodes": 2})
    with LocalCluster(tmp_path / "system", extra_args={"experiment": ["--dashboard-port", str(port)]}) as cluster:
        url = f"http://127.0.0.1:{port}/"
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "uPlot.iife.min.js" in page
        experiment_api(cluster).StartExperiment(exp_pb.StartExperimentRequest(
            experiment_id="watched", config=to_proto(config)), timeout=60)
        wait_for(lambda: b"watched" in urllib.request.urlopen(url + "api/experiments", timeout=10).read(), 30,
                 "the experiment in the API")
        first = render(browser, url, "--dump-dom")
        assert 'id="row-watched"' in first and "Running" in first
        before = points(first, "watched")
        assert set(before) == {"charts/episodic_return", "charts/eval_return", "losses/td_loss"}, first[-3000:]
        time.sleep(8)
        after = points(render(browser, url, "--dump-dom"), "watched")
        for metric in ("charts/episodic_return", "losses/td_loss", "charts/eval_return"):
            assert after[metric] > before[metric] >= 0, (metric, before, after)
        screenshot = tmp_path / "dashboard.png"
        render(browser, url, f"--screenshot={screenshot}")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
    print(f"\n[dashboard] screenshot: {screenshot}")


def experiment_api(cluster: LocalCluster):
    return experiment_stub(cluster)
