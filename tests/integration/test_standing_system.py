"""`kuberl up` as a user runs it: a standing system, two experiments started, watched, stopped
and finished through `kuberl start`, `status` and `stop`, then Ctrl-C stops every role."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

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
