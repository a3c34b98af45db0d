"""Local mode: every role as its own process on loopback (real gRPC, static discovery, SQLite),
driven through the experiment role exactly as a cluster would be."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from kuberl.config import ConfigError, Experiment, load_manifest, to_proto
from kuberl.rpc import stub, wait_until_serving
from kuberl.v1 import experiment_service_pb2 as exp_pb
from kuberl.v1 import experiment_service_pb2_grpc as exp_grpc

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class Replica:
    role: str
    index: int
    port: int
    args: list[str]
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


@dataclass
class LocalCluster:
    """All six roles as child processes: M environment and N buffer replicas, one of the rest."""

    workdir: Path
    environment_replicas: int = 1
    buffer_replicas: int = 1
    database_url: str | None = None  # default: SQLite in workdir
    extra_args: dict[str, list[str]] = field(default_factory=dict)  # role -> more `kuberl serve` flags
    replicas: dict[str, list[Replica]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        counts = {"analytics": 1, "policy": 1, "buffer": self.buffer_replicas, "learner": 1,
                  "environment": self.environment_replicas, "experiment": 1}
        ports = {role: [free_port() for _ in range(n)] for role, n in counts.items()}
        peers = {role: ",".join(f"{LOOPBACK}:{p}" for p in ports[role]) for role in counts}
        for role in counts:
            self.replicas[role] = []
            for i, port in enumerate(ports[role]):
                args = ["serve", role, "--host", LOOPBACK, "--port", str(port), "--node-name", f"{role}-{i}",
                        "--data-dir", str(self.workdir / f"{role}-{i}"),
                        "--database", self.database_url or f"sqlite:///{self.workdir / 'analytics.db'}",
                        *(arg for peer in ("environment", "buffer", "analytics", "learner", "policy")
                          for arg in (f"--{peer}", peers[peer])), *self.extra_args.get(role, [])]
                self.replicas[role].append(Replica(role, i, port, args, self.workdir / f"{role}-{i}.log"))

    def address(self, role: str) -> str:
        return ",".join(r.address for r in self.replicas[role])

    def _spawn(self, replica: Replica) -> None:
        env = dict(os.environ)
        # Small matrices: BLAS threads only fight over the two cores.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        log = open(replica.log_path, "ab")
        replica.process = subprocess.Popen([sys.executable, "-m", "kuberl.cli", *replica.args], stdout=log,
                                           stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()

    def _wait_serving(self, replicas: list[Replica], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for replica in replicas:
            while True:
                assert replica.process is not None
                if replica.process.poll() is not None:
                    raise RuntimeError(f"{replica.name} exited with {replica.process.returncode}:\n"
                                       + self.log_tail(replica))
                try:
                    wait_until_serving(replica.address, min(1.0, max(0.1, deadline - time.monotonic())))
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{replica.name} not serving after {timeout:.0f}s:\n"
                                           + self.log_tail(replica)) from None

    def start(self) -> None:
        everyone = [r for rs in self.replicas.values() for r in rs]
        for replica in everyone:
            self._spawn(replica)
        self._wait_serving(everyone)

    def kill(self, role: str, index: int = 0, sig: int = signal.SIGKILL) -> None:
        replica = self.replicas[role][index]
        if replica.process is not None and replica.process.poll() is None:
            replica.process.send_signal(sig)
            replica.process.wait(timeout=30)

    def restart(self, role: str, index: int = 0) -> None:
        replica = self.replicas[role][index]
        self.kill(role, index)
        self._spawn(replica)
        self._wait_serving([replica])

    def log_tail(self, replica: Replica, lines: int = 30) -> str:
        try:
            return "\n".join(replica.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to every role (each drains and snapshots), SIGKILL to whoever lingers;
        analytics last, so that the others' final metrics (the evaluation that ended the run
        among them) still have somewhere to go."""
        for wave in ([r for role, rs in self.replicas.items() if role != "analytics" for r in rs],
                     self.replicas.get("analytics", [])):
            running = [r for r in wave if r.process is not None]
            for replica in running:
                if replica.process.poll() is None:
                    replica.process.terminate()
            deadline = time.monotonic() + grace
            for replica in running:
                try:
                    replica.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    replica.process.kill()
                    replica.process.wait()

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def experiment_stub(cluster: LocalCluster) -> exp_grpc.ExperimentServiceStub:
    return stub(exp_grpc.ExperimentServiceStub, cluster.address("experiment"))


def wait_for_finish(cluster: LocalCluster, experiment_id: str, timeout: float, on_status=None,
                    poll_seconds: float = 0.5) -> exp_pb.ExperimentStatus:
    """Polls the experiment role until the experiment ends (or timeout); returns its last status."""
    api = experiment_stub(cluster)
    deadline = time.monotonic() + timeout
    while True:
        status = api.GetExperimentStatus(exp_pb.GetExperimentStatusRequest(experiment_id=experiment_id),
                                         timeout=30).status
        if on_status is not None:
            on_status(status)
        if status.phase not in (exp_pb.EXPERIMENT_PHASE_PENDING, exp_pb.EXPERIMENT_PHASE_RUNNING):
            return status
        if time.monotonic() > deadline:
            return api.StopExperiment(exp_pb.StopExperimentRequest(experiment_id=experiment_id), timeout=60).status
        time.sleep(poll_seconds)


# --- kuberl run ------------------------------------------------------------------------------

def _fmt(value: float, spec: str = ".1f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


class Progress:
    """A tqdm bar over env steps (or a plain line every few seconds when not wanted)."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled
        self.history: list[tuple[float, int, float, float]] = []  # seconds, env steps, mean, eval
        self._last_line = 0.0
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="step", unit_scale=True, dynamic_ncols=True, desc="env steps")

    def __call__(self, s: exp_pb.ExperimentStatus) -> None:
        self.history.append((s.elapsed_seconds, s.env_steps, s.mean_return, s.eval_return))
        fields = dict(episodes=s.episodes, ret=_fmt(s.mean_return), eval=_fmt(s.eval_return),
                      policy=s.policy_version, updates=s.updates)
        if self._bar is not None:
            self._bar.update(max(0, s.env_steps - self._bar.n))
            self._bar.set_postfix(fields, refresh=True)
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            rate = s.env_steps / s.elapsed_seconds if s.elapsed_seconds else 0.0
            print(f"[{s.elapsed_seconds:6.1f}s] env steps {s.env_steps} ({rate:.0f}/s) "
                  + " ".join(f"{k} {v}" for k, v in fields.items()), flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run_experiment(experiment: Experiment, output: Path, timeout: float, progress: bool = True,
                   database_url: str | None = None) -> tuple[exp_pb.ExperimentStatus, Progress, float]:
    """Starts a local cluster for the manifest, runs the experiment to its end, stops everything."""
    cfg = experiment.config
    started = time.monotonic()
    bar = Progress(cfg.stop.max_env_steps, progress)
    cluster = LocalCluster(output, cfg.environment.replicas, cfg.buffer.replicas, database_url)
    try:
        with cluster:
            api = experiment_stub(cluster)
            api.StartExperiment(exp_pb.StartExperimentRequest(experiment_id=experiment.name, config=to_proto(cfg)),
                                timeout=60)
            try:
                status = wait_for_finish(cluster, experiment.name, timeout, bar)
            except KeyboardInterrupt:
                status = api.StopExperiment(exp_pb.StopExperimentRequest(experiment_id=experiment.name),
                                            timeout=60).status
    finally:
        bar.close()
    return status, bar, time.monotonic() - started


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_manifest(path: Path, output: Path | None, timeout: float, progress: bool = True,
                 database_url: str | None = None) -> int:
    try:
        experiment = load_manifest(path)
        from kuberl.envs import describe

        try:
            describe(experiment.config.env_id)
        except ValueError as err:
            raise ConfigError("spec.envId", str(err).removeprefix("env_id: ")) from None
        if experiment.config.environment.replicas < 1:
            raise ConfigError("spec.environment.replicas", "must be >= 1 to run locally (0 suspends in a cluster)")
    except ConfigError as err:
        print(f"kuberl: {path}: invalid manifest: {err}", file=sys.stderr)
        return 2
    output = output or Path("kuberl-runs") / experiment.name
    print(f"kuberl: running {experiment.name} ({experiment.config.env_id}) with "
          f"{experiment.config.environment.replicas} environment and {experiment.config.buffer.replicas} buffer "
          f"replicas; logs in {output}", file=sys.stderr)
    # SIGTERM (a CI runner, `kill`) must stop the children too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        status, bar, wall = run_experiment(experiment, output, timeout, progress, database_url)
    except (RuntimeError, TimeoutError, grpc.RpcError) as err:
        print(f"kuberl: the local cluster failed: {err}", file=sys.stderr)
        return 1
    from kuberl.plot import write_learning_curve

    curve = write_learning_curve(bar.history, output / "learning_curve.png",
                                 title=f"{experiment.name}: {experiment.config.env_id}")
    phase = exp_pb.ExperimentPhase.Name(status.phase).removeprefix("EXPERIMENT_PHASE_")
    print(f"\n{experiment.name}: {phase}  {status.message}\n"
          f"  wall time        {wall:.1f} s (experiment {status.elapsed_seconds:.1f} s)\n"
          f"  env steps        {status.env_steps} ({status.env_steps / max(status.elapsed_seconds, 1e-9):.0f}/s)\n"
          f"  episodes         {status.episodes}\n"
          f"  mean return      {_fmt(status.mean_return)} (last 100 training episodes)\n"
          f"  greedy return    {_fmt(status.eval_return)} (mean of {experiment.config.stop.eval_episodes} episodes)\n"
          f"  updates          {status.updates}, policy version {status.policy_version}\n"
          f"  learning curve   {curve or 'not drawn: pip install kuberl[local] (matplotlib)'}")
    return 0 if status.phase == exp_pb.EXPERIMENT_PHASE_SUCCEEDED else 1
