"""`kuberl up` as a user runs it: a standing system, two experiments started, watched, stopped
and finished through `kuberl start`, `status` and `stop`; the solved one deleted and its result
still exported from the policy role; then Ctrl-C stops every role."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import yaml

from kuberl.lifecycle import Phase
from tests.conftest import REPO
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


def test_two_experiments_run_side_by_side_on_a_standing_system(tmp_path):
    system_dir = tmp_path / "system"
    up = subprocess.Popen([sys.executable, "-m", "kuberl.cli", "up", "--environments", "2", "--buffers", "2",
                           "--experiment-port", "0", "--dir", str(system_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not (lines and lines[-1].startswith("export ")):
            line = up.stdout.readline()
            assert line, f"kuberl up exited: {up.stderr.read()[-3000:]}"
            lines.append(line.strip())
        env = dict(os.environ, **dict(re.findall(r"(KUBERL_\w+)=(\S+)", lines[-1])))

        def kuberl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "kuberl.cli", *args], capture_output=True, text=True,
                                  timeout=120, env=env, cwd=tmp_path)

        base = yaml.safe_load((REPO / "examples" / "cartpole.yaml").read_text())
        for name, seed in (("alpha", 1), ("beta", 2)):
            base["metadata"]["name"], base["spec"]["seed"] = name, seed
            base["spec"]["environment"]["replicas"] = base["spec"]["buffer"]["replicas"] = 1
            if name == "beta":  # never evaluated, so it has no result when stopped (seen: one within 2 s)
                base["spec"]["stop"]["evalIntervalUpdates"] = 10_000_000
            (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(base))
            started = kuberl("start", f"{name}.yaml")
            assert started.returncode == 0 and started.stdout.startswith(f"default/{name} started"), started.stderr
        owners = [r["environmentReplicas"] for r in json.loads(kuberl("status", "-o", "json").stdout)]
        assert len(owners) == 2 and owners[0] != owners[1], "one experiment per actor"

        def phases() -> dict[str, str]:
            return {r["experimentId"]: r["phase"] for r in json.loads(kuberl("status", "-o", "json").stdout)}

        stopped = kuberl("stop", "beta")  # by its bare name
        assert stopped.returncode == 0 and stopped.stdout.strip() == f"default/beta: {Phase.STOPPED.value}"
        wait_for(lambda: phases()["default/alpha"] == Phase.SUCCEEDED.value, 180, "alpha solved")
        assert phases() == {"default/alpha": Phase.SUCCEEDED.value, "default/beta": Phase.STOPPED.value}
        refused = kuberl("stop", "gamma")
        assert refused.returncode == 3 and "NOT_FOUND" in refused.stderr

        # Deleted, alpha's workloads and newest weights are gone, but its result stays for the
        # policy role's retention (7 days by default), with the config to use it by.
        assert kuberl("delete", "default/alpha").returncode == 0
        held = {r["experimentId"]: r for r in json.loads(kuberl("results", "-o", "json").stdout)}
        kept = held["default/alpha"]
        assert kept["envId"] == "CartPole-v1" and kept["evaluation"]["meanReturn"] >= 475
        assert kept["expiresAtSeconds"] - kept["releasedAtSeconds"] == 7 * 24 * 3600
        assert kuberl("results").stdout.count("default/alpha") == 1, "the table lists it too"
        dashboard = next(line.split()[-1] for line in lines + [up.stdout.readline().strip()]
                         if line.startswith("dashboard: "))
        curves = json.loads(urllib.request.urlopen(f"{dashboard}api/curves?experiment=default/alpha",
                                                   timeout=10).read())
        assert all(curves.values()), "its metrics stay too"
        exported = kuberl("export", "alpha", "--policy", env["KUBERL_POLICY_ADDRESS"], "-o", "alpha.npz")
        assert exported.returncode == 0, exported.stderr
        with np.load(tmp_path / "alpha.npz", allow_pickle=False) as f:
            metadata = json.loads(str(f["metadata"]))
        assert (metadata["experiment"], metadata["policy_version"], metadata["is_result"]) == (
            "alpha", kept["version"], True)
        unknown = kuberl("results", "--delete", "default/beta")  # never evaluated: no result
        assert unknown.returncode == 3 and "NOT_FOUND" in unknown.stderr
        assert kuberl("results", "--delete", "default/alpha").returncode == 0
        assert "default/alpha" not in kuberl("results").stdout
        gone = kuberl("export", "alpha", "--policy", env["KUBERL_POLICY_ADDRESS"], "-o", "again.npz")
        assert gone.returncode == 2 and "holds no result of alpha" in gone.stderr
        # A new experiment under the deleted one's id starts with none of its metrics.
        assert kuberl("start", "alpha.yaml").returncode == 0
        fresh = json.loads(urllib.request.urlopen(f"{dashboard}api/curves?experiment=default/alpha",
                                                  timeout=10).read())
        assert sum(map(len, fresh.values())) < sum(map(len, curves.values())), (fresh, curves)
        assert kuberl("stop", "alpha").returncode == 0
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert up.returncode == 0, up.stderr.read()[-3000:]
    state = json.loads((system_dir / "replicas.json").read_text())
    assert len(state) == 8  # 2 actors, 2 shards, one of each other role
    time.sleep(0.5)
    for replica in state.values():  # every role stopped with it
        with pytest.raises(ProcessLookupError):
            os.kill(replica["pid"], 0)
