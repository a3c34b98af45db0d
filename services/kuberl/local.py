"""Local mode: every role as its own process on loopback (real gRPC, static discovery, SQLite).

A `LocalCluster` is a small cluster: with `supervise=True` a role process that dies is
restarted with backoff, as a Deployment's kubelet would (a shard restores its snapshot, the
learner its policy), and one that keeps dying is reported as crash-looping. `kuberl run`
starts the roles the way the operator does (each from the experiment file) and reports the
status the lifecycle computes, the same function as `kubectl get rlx`.

Every replica serves mutual TLS with a certificate from a throwaway CA in WORKDIR/tls (kept
across resumes; leaves issued anew at each start): the per-experiment roles' certificates name
the experiment when there is one, and the launcher calls as `admin` (WORKDIR/tls/admin, also
for people's `kuberl status --tls-dir`; WORKDIR/tls/reader can only read).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kuberl.config import ConfigError, Manifest, _camel, load_manifest
from kuberl.exitcodes import ExitCode
from kuberl.lifecycle import Intent, Observation, Phase, compute_status, recorded_phase, transitions
from kuberl.observe import episode_returns, learner_view
from kuberl.rpc import stub, use_tls, wait_until_serving
from kuberl.security import PER_EXPERIMENT_ROLES, Identity, TlsFiles, authority_in, issue_identity
from kuberl.v1 import experiment_service_pb2_grpc as exp_grpc

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
# Every role, in start order: the ones others report to first.
START_ORDER = ("analytics", "policy", "buffer", "learner", "environment", "experiment")
# What `kuberl run` starts: the experiment's own roles and the shared ones they report to.
RUN_ROLES = ("analytics", "policy", "buffer", "learner", "environment")
FILE_ROLES = ("environment", "buffer", "learner")  # the roles that serve the experiment file
# Restart backoff, as the kubelet's: doubling from BASE to CAP; a replica that ran for
# STABLE_SECONDS has its count of consecutive restarts reset.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
STABLE_SECONDS = 30.0
LOCAL_CRASH_LOOP_RESTART_LIMIT = 5
OBSERVE_TIMEOUT = 2.0


# Listening ports come from below the kernel's ephemeral range: a port picked by binding 0 is
# an ephemeral one, and any outgoing connection may take it before the replica binds it (CI saw
# a shard fail to start on "Address already in use"). Outgoing connections never take these,
# and Kubernetes' NodePorts (30000 and up) are above them.
LISTEN_PORTS = (20000, 30000)
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def listen_port_range() -> tuple[int, int]:
    """[low, high): KUBERL_LISTEN_PORTS ("LOW-HIGH", both included) when set, so that launchers
    side by side can each have their own; else LISTEN_PORTS, cut short where this machine's
    ephemeral range begins lower."""
    wanted = os.environ.get("KUBERL_LISTEN_PORTS")
    if wanted:
        low_text, _, high_text = wanted.partition("-")
        try:
            low, high = int(low_text), int(high_text) + 1
        except ValueError:
            low = high = 0
        if not 1024 <= low < high <= 65536:
            raise ConfigError("KUBERL_LISTEN_PORTS", f"{wanted!r} is not a range LOW-HIGH of ports from 1024 to 65535")
        return low, high
    low, high = LISTEN_PORTS
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768  # Linux's default
    return low, max(low + 1000, min(high, ephemeral_low))


def free_port() -> int:
    """A loopback port nobody listens on, outside the ephemeral range, not handed out before here."""
    low, high = listen_port_range()
    rng = random.SystemRandom()
    with _handed_out_lock:
        for _ in range(200):
            port = rng.randrange(low, high)
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {low}..{high - 1}")


def restart_delay(restarts: int) -> float:
    """Seconds before the next start of a replica that has exited `restarts` times in a row."""
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, restarts - 1))


@dataclass
class ReplicaProcess:
    role: str
    index: int
    port: int
    metrics_port: int
    args: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0  # consecutive exits without a stable run in between
    restart_at: float | None = None  # while down under supervision: when it comes back

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalCluster:
    """Role processes on loopback: M environment and N buffer replicas, one of the rest."""

    workdir: Path
    environment_replicas: int = 1
    buffer_replicas: int = 1
    database_url: str | None = None  # default: SQLite in workdir
    extra_args: dict[str, list[str]] = field(default_factory=dict)  # role -> more `kuberl serve` flags
    roles: tuple[str, ...] = START_ORDER
    supervise: bool = False
    on_event: Callable[[str], None] = lambda message: None  # noqa: E731
    tls: bool = True  # False: every replica plaintext (--insecure)
    experiment_id: str | None = None  # the per-experiment roles' certificates name it (file mode)
    experiment_port: int | None = None  # the experiment API's port (default: any free one)
    replicas: dict[str, list[ReplicaProcess]] = field(default_factory=dict)
    admin: TlsFiles | None = None  # the launcher's identity (tls only)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        authority = authority_in(self.workdir / "tls") if self.tls else None
        if authority is not None:
            self.admin = issue_identity(authority, self.workdir / "tls" / "admin", Identity("admin"))
            issue_identity(authority, self.workdir / "tls" / "reader", Identity("reader"))
        counts = {role: {"buffer": self.buffer_replicas, "environment": self.environment_replicas}.get(role, 1)
                  for role in START_ORDER}
        ports = {role: [free_port() for _ in range(n)] for role, n in counts.items()}
        if self.experiment_port:
            ports["experiment"] = [self.experiment_port]
        peers = {role: ",".join(f"{LOOPBACK}:{p}" for p in ports[role]) for role in counts}
        for role in self.roles:
            self.replicas[role] = []
            for i, port in enumerate(ports[role]):
                metrics_port = free_port()
                args = ["serve", role, "--host", LOOPBACK, "--port", str(port), "--node-name", f"{role}-{i}",
                        "--metrics-port", str(metrics_port),
                        "--data-dir", str(self.workdir / f"{role}-{i}"),
                        "--database", self.database_url or f"sqlite:///{self.workdir / 'analytics.db'}",
                        *(arg for peer in ("environment", "buffer", "analytics", "learner", "policy")
                          for arg in (f"--{peer}", peers[peer])), *self.extra_args.get(role, [])]
                if authority is None:
                    args.append("--insecure")
                else:
                    scope = self.experiment_id if role in PER_EXPERIMENT_ROLES else None
                    identity = issue_identity(authority, self.workdir / "tls" / f"{role}-{i}", Identity(role, scope))
                    args += ["--tls-dir", str(identity.directory)]
                self.replicas[role].append(ReplicaProcess(role, i, port, metrics_port, args,
                                                          self.workdir / f"{role}-{i}.log"))
        # Every role inherits the read end and stops when it reads end of file: when this
        # process dies, however it dies, the kernel closes the write end (no other process
        # holds it: pipes are not inherited unless passed).
        self._lifeline_read, self._lifeline_write = os.pipe()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._tls_before: TlsFiles | None = None

    def address(self, role: str) -> str:
        return ",".join(r.address for r in self.replicas[role])

    def everyone(self) -> list[ReplicaProcess]:
        return [r for rs in self.replicas.values() for r in rs]

    def _spawn(self, replica: ReplicaProcess) -> None:
        env = dict(os.environ)
        # Small matrices: BLAS threads only fight over the two cores.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        log = open(replica.log_path, "ab")
        replica.process = subprocess.Popen(
            [sys.executable, "-m", "kuberl.cli", *replica.args, "--lifeline-fd", str(self._lifeline_read)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, pass_fds=(self._lifeline_read,))
        log.close()
        replica.started_at, replica.restart_at = time.monotonic(), None
        self._write_state()

    def _write_state(self) -> None:
        """replicas.json in the work directory: each replica's pid, ports and restarts (for people and tests)."""
        state = {r.name: {"role": r.role, "pid": r.process.pid if r.process else None, "port": r.port,
                          "metrics_port": r.metrics_port,
                          "restarts": r.restarts, "log": str(r.log_path)} for r in self.everyone()}
        tmp = self.workdir / "replicas.json.tmp"
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self.workdir / "replicas.json")

    def wait_serving(self, replicas: list[ReplicaProcess], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for replica in replicas:
            while True:
                assert replica.process is not None
                if replica.process.poll() is not None:
                    raise RuntimeError(f"{replica.name} exited with {replica.process.returncode}:\n"
                                       + self.log_tail(replica))
                try:
                    wait_until_serving(replica.address, min(1.0, max(0.1, deadline - time.monotonic())), replica.role)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{replica.name} not serving after {timeout:.0f}s:\n"
                                           + self.log_tail(replica)) from None

    def start(self) -> None:
        """Starts every replica; this process calls them as the cluster's admin until `stop`."""
        self._tls_before = use_tls(self.admin)
        for replica in self.everyone():
            self._spawn(replica)
        if self.supervise:
            # A replica that cannot start is the supervisor's to restart and, past the cap, to report.
            self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
            self._supervisor.start()
        else:
            self.wait_serving(self.everyone())

    # --- supervision -------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            with self._lock:
                for replica in self.everyone():
                    if self._stopping.is_set() or replica.process is None or replica.running:
                        continue
                    if replica.restart_at is None:
                        ran = now - replica.started_at
                        replica.restarts = 1 if ran >= STABLE_SECONDS else replica.restarts + 1
                        replica.restart_at = now + restart_delay(replica.restarts)
                        self.on_event(f"{replica.name} exited with {replica.process.returncode} after {ran:.1f}s; "
                                      f"restarting in {restart_delay(replica.restarts):.1f}s "
                                      f"(restart {replica.restarts}; log {replica.log_path})")
                        self._write_state()
                    elif now >= replica.restart_at:
                        self._spawn(replica)

    def ready(self) -> dict[str, int]:
        """role -> replicas whose process is running (a restarted one counts again at once)."""
        return {role: sum(r.running for r in rs) for role, rs in self.replicas.items()}

    def crash_loops(self) -> dict[str, int]:
        """role -> the most consecutive restarts of any of its replicas that is down now."""
        worst: dict[str, int] = {}
        for replica in self.everyone():
            if replica.restart_at is not None:
                worst[replica.role] = max(worst.get(replica.role, 0), replica.restarts)
        return worst

    # --- by hand -----------------------------------------------------------------------------

    def kill(self, role: str, index: int = 0, sig: int = signal.SIGKILL) -> None:
        replica = self.replicas[role][index]
        if replica.running:
            replica.process.send_signal(sig)
            replica.process.wait(timeout=30)

    def restart(self, role: str, index: int = 0) -> None:
        replica = self.replicas[role][index]
        with self._lock:
            self.kill(role, index)
            self._spawn(replica)
        self.wait_serving([replica])

    def log_tail(self, replica: ReplicaProcess, lines: int = 30) -> str:
        try:
            return "\n".join(replica.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to every role (each drains and snapshots), SIGKILL to whoever lingers;
        analytics last, so that the others' final metrics (the evaluation that ended the run
        among them) still have somewhere to go."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
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
        if self._lifeline_write >= 0:  # not on a second stop: the numbers may be another file's by then
            os.close(self._lifeline_read)
            os.close(self._lifeline_write)
            self._lifeline_read = self._lifeline_write = -1
        use_tls(self._tls_before)

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


# --- kuberl up: a standing system ------------------------------------------------------------

def run_standing_system(workdir: Path, environments: int, buffers: int, experiment_port: int,
                        database_url: str | None = None) -> int:
    """Every role on loopback (M actors, N shards, one of the rest), supervised, until Ctrl-C or
    SIGTERM; experiments come and go through the experiment API, as many as the replicas hold."""
    if environments < 1 or buffers < 1:
        print(f"kuberl up: --environments and --buffers must be >= 1 (got {environments}, {buffers})",
              file=sys.stderr)
        return ExitCode.USAGE
    dashboard_port = free_port()
    cluster = LocalCluster(workdir, environment_replicas=environments, buffer_replicas=buffers,
                           database_url=database_url, supervise=True, experiment_port=experiment_port,
                           extra_args={"experiment": ["--dashboard-port", str(dashboard_port)]},
                           on_event=lambda message: print(f"kuberl up: {message}", file=sys.stderr, flush=True))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cluster.start()
        cluster.wait_serving(cluster.everyone())
        admin = cluster.admin.directory if cluster.admin else None
        print(f"kuberl up: {environments} environment and {buffers} buffer replicas serving; logs, snapshots "
              f"and replicas.json in {workdir}\n"
              f"export KUBERL_EXPERIMENT_ADDRESS={cluster.address('experiment')} "
              f"KUBERL_POLICY_ADDRESS={cluster.address('policy')} KUBERL_TLS_DIR={admin}\n"
              f"dashboard: http://{LOOPBACK}:{dashboard_port}/\n"
              "then: kuberl start FILE.yaml, kuberl status, kuberl stop NAME, kuberl delete NAME, kuberl results, "
              "kuberl export NAME --policy $KUBERL_POLICY_ADDRESS; Ctrl-C stops everything", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("kuberl up: stopping every role", file=sys.stderr, flush=True)
    except (RuntimeError, TimeoutError) as err:
        print(f"kuberl up: {err}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    finally:
        # A second Ctrl-C (or a supervisor's TERM after ours) must not cut the shutdown short
        # and leave roles running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    return ExitCode.OK


# --- kuberl run ------------------------------------------------------------------------------

def _describe_result(result: dict[str, Any] | None) -> str:
    if not result:
        return "none (no version was evaluated)"
    return (f"policy version {result['policyVersion']}: mean return {result['meanReturn']:.1f} over "
            f"{result['episodes']} fresh episodes")


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


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

    def __call__(self, status: dict[str, Any], seconds: float) -> None:
        steps = int(status.get("envSteps", 0))
        mean, greedy = status.get("meanReturn", math.nan), status.get("evalReturn", math.nan)
        self.history.append((seconds, steps, mean, greedy))
        fields = dict(phase=status.get("phase"), episodes=status.get("episodes", 0), ret=_fmt(mean),
                      eval=_fmt(greedy), policy=status.get("policyVersion", 0), updates=status.get("updates", 0))
        if self._bar is not None:
            self._bar.update(max(0, steps - self._bar.n))
            self._bar.set_postfix(fields, refresh=True)
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            rate = steps / seconds if seconds else 0.0
            print(f"[{seconds:6.1f}s] env steps {steps} ({rate:.0f}/s) "
                  + " ".join(f"{k} {v}" for k, v in fields.items()), flush=True)

    def note(self, message: str) -> None:
        """A log line that does not tear the bar."""
        if self._bar is not None:
            self._bar.write(f"kuberl: {message}", file=sys.stderr)
        else:
            print(f"kuberl: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class RunResult:
    status: dict[str, Any]
    wall_seconds: float
    experiment_seconds: float
    steps_before: int  # env steps the resumed replay already held


def fresh_run_dir(wanted: Path) -> Path:
    """`wanted`, or the first `wanted-2`, `wanted-3`, ... that nobody has used."""
    candidate, n = wanted, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = wanted.with_name(f"{wanted.name}-{n}")
    return candidate


def newest_run_dir(wanted: Path) -> Path | None:
    """The most recent of `wanted`, `wanted-2`, ... that holds a run."""
    runs = [p for p in [wanted, *wanted.parent.glob(f"{wanted.name}-*")]
            if (p / "experiment.yaml").is_file() and (p.name == wanted.name or p.name[len(wanted.name) + 1:].isdigit())]
    return max(runs, key=lambda p: (p / "experiment.yaml").stat().st_mtime, default=None)


def _run_dashboard(manifest: Manifest, cluster: LocalCluster,
                   latest: Callable[[], tuple[dict[str, Any], float]]) -> Any:
    """The experiment role's dashboard over this run's own status (kuberl run has no experiment role)."""
    from kuberl.dashboard import Dashboard
    from kuberl.experiment.server import status_fields, status_to_proto

    actors = [r.address for r in cluster.replicas["environment"]]

    def experiments() -> list[dict[str, Any]]:
        status, elapsed = latest()
        return [status_fields(status_to_proto(manifest.experiment_id, manifest.config.env_id, status, elapsed, actors))]

    return Dashboard(0, LOOPBACK, experiments, cluster.address("analytics"))


def run_experiment(manifest: Manifest, output: Path, timeout: float, bar: Progress, database_url: str | None = None,
                   crash_loop_restart_limit: int = LOCAL_CRASH_LOOP_RESTART_LIMIT, dashboard: bool = False
                   ) -> RunResult:
    """Runs the manifest's roles under supervision until the lifecycle says the run has ended."""
    cfg = manifest.config
    output.mkdir(parents=True, exist_ok=True)
    experiment_file = output / "experiment.yaml"
    experiment_file.write_text(manifest.manifest_text())
    started = time.monotonic()
    flags = ["--experiment", str(experiment_file)]
    cluster = LocalCluster(output, cfg.environment.replicas, cfg.buffer.replicas, database_url,
                           extra_args=dict.fromkeys(FILE_ROLES, flags), roles=RUN_ROLES, supervise=True,
                           on_event=bar.note, experiment_id=manifest.experiment_id)
    intent, status, steps_before = Intent(cfg), {}, None
    with cluster, contextlib.ExitStack() as cleanup:
        learner_address, analytics_address = cluster.address("learner"), cluster.address("analytics")
        if dashboard:
            page = _run_dashboard(manifest, cluster, lambda: (status, time.monotonic() - started))
            cleanup.callback(page.close)
            bar.note(f"{manifest.name}: dashboard at {page.url}")
        while True:
            try:
                learner = learner_view(learner_address, manifest.experiment_id, OBSERVE_TIMEOUT)
                episodes, mean_return = episode_returns(analytics_address, manifest.experiment_id, OBSERVE_TIMEOUT)
                observed = Observation(generation=1, now=datetime.now(timezone.utc), ready=cluster.ready(),
                                       crash_loops=cluster.crash_loops(), learner=learner, episodes=episodes,
                                       mean_return=mean_return, crash_loop_restart_limit=crash_loop_restart_limit)
                status, previous = compute_status(intent, status, observed), status
                if steps_before is None and learner is not None:
                    steps_before = learner.env_steps  # what the restored replay already counted
                for told in transitions(previous, status):
                    bar.note(f"{manifest.name}: {told.reason}: {told.message}")
                bar(status, time.monotonic() - started)
                if recorded_phase(status).finished:
                    break
                if time.monotonic() - started > timeout and not intent.stop:
                    bar.note(f"{manifest.name}: no end after {timeout:.0f}s; stopping")
                    intent = Intent(cfg, stop=True)
                    continue
                time.sleep(0.5)
            except KeyboardInterrupt:
                intent = Intent(cfg, stop=True)
        experiment_seconds = time.monotonic() - started
    return RunResult(status, time.monotonic() - started, experiment_seconds, steps_before or 0)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_manifest(path: Path, output: Path | None, timeout: float, progress: bool = True,
                 database_url: str | None = None, resume: Path | bool | None = None, dashboard: bool = False) -> int:
    try:
        manifest = load_manifest(path)
        from kuberl.envs import describe

        try:
            describe(manifest.config.env_id, manifest.config.env_kwargs)
        except ValueError as err:  # "env_id: ..." or "env_kwargs: ...": the field it names
            name, _, message = str(err).partition(": ")
            raise ConfigError(f"spec.{_camel(name)}", message) from None
        if manifest.config.environment.replicas < 1:
            raise ConfigError("spec.environment.replicas", "must be >= 1 to run locally (0 suspends in a cluster)")
    except ConfigError as err:
        print(f"kuberl: {path}: invalid manifest: {err}", file=sys.stderr)
        return ExitCode.USAGE
    wanted = output or Path("kuberl-runs") / manifest.name
    if resume:
        run_dir = resume if isinstance(resume, Path) else newest_run_dir(wanted)
        if run_dir is None or not (run_dir / "experiment.yaml").is_file():
            print(f"kuberl: --resume: no earlier run of {manifest.name} in {run_dir or wanted}", file=sys.stderr)
            return ExitCode.USAGE
        how = f"resuming the run in {run_dir} (its replay and weights)"
    else:
        run_dir = fresh_run_dir(wanted)
        how = f"a fresh run in {run_dir}" + (f" ({wanted} is taken; --resume continues it)" if run_dir != wanted
                                             else "")
    print(f"kuberl: running {manifest.name} ({manifest.config.env_id}) with {manifest.config.environment.replicas} "
          f"environment and {manifest.config.buffer.replicas} buffer replicas: {how}", file=sys.stderr)
    # SIGTERM (a CI runner, `kill`) must stop the children too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    bar = Progress(manifest.config.stop.max_env_steps, progress)
    try:
        result = run_experiment(manifest, run_dir, timeout, bar, database_url, dashboard=dashboard)
    except (RuntimeError, TimeoutError) as err:
        print(f"kuberl: the local cluster failed: {err}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    finally:
        bar.close()
    from kuberl.plot import write_learning_curve

    curve = write_learning_curve(bar.history, run_dir / "learning_curve.png",
                                 title=f"{manifest.name}: {manifest.config.env_id}")
    status, seconds = result.status, max(result.experiment_seconds, 1e-9)
    steps = int(status.get("envSteps", 0))
    resumed = f" ({result.steps_before} before this run)" if resume else ""
    print(f"\n{manifest.name}: {status['phase']}  {status['message']}\n"
          f"  run              {'resumed' if resume else 'fresh'}, in {run_dir}\n"
          f"  wall time        {result.wall_seconds:.1f} s\n"
          f"  env steps        {steps}{resumed} ({(steps - result.steps_before) / seconds:.0f}/s this run)\n"
          f"  episodes         {status.get('episodes', 0)}\n"
          f"  mean return      {_fmt(status.get('meanReturn'))} (last 100 training episodes)\n"
          f"  greedy return    {_fmt(status.get('evalReturn'))} "
          f"(mean of {manifest.config.stop.eval_episodes} episodes, the latest evaluation)\n"
          f"  result           {_describe_result(status.get('result'))}\n"
          f"  updates          {status.get('updates', 0)}, policy version {status.get('policyVersion', 0)}\n"
          f"  learning curve   {curve or 'not drawn: pip install kuberl[local] (matplotlib)'}")
    return ExitCode.OK if recorded_phase(status) is Phase.SUCCEEDED else ExitCode.UNSOLVED
