#!/usr/bin/env python
"""kuberl throughput and time-to-solve benchmark: measures, prints a table, judges nothing.

Rows (select with --only):
  env      env steps/s of one Actor core (epsilon-greedy + MLP forward + vector env step), in-process
  buffer   transitions/s one real buffer process accepts over loopback (2 client threads)
  learner  Double DQN updates/s, in-process core and through a real learner process (TrainStep)
  solve    CartPole-v1 by `kuberl run examples/cartpole.yaml` over seeds 1..N beside Stable-Baselines3's DQN
           on the same seeds (when an interpreter has it: --sb3-python): env steps to solve, wall time,
           the learner's rate during the run, the result scored on 100 fresh episodes
  tasks    the four classic tasks' example manifests (--tasks, --task-seeds) within rl-zoo's budgets, beside SB3
  scaling  env steps/s of 1 and 2 actor processes (and shards) with the learner held back, and a model to 64
  cluster  the same manifest `kubectl apply`d on the test cluster (tests/kube.py says which): seconds
           to its first transition and to Succeeded
  cluster-scaling  env steps/s of 1, 2 and 3 actor pods (and shard pods) on the test cluster, the learner
           held back as in `scaling`, beside the model N x the 1-pod rate

    cd /work/main && python bench/run_bench.py [--quick] [--only buffer learner] [--solve-runs 5]
"""

from __future__ import annotations

import os

# The roles run with one BLAS thread (LocalCluster sets it); the in-process rows do the same.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from pathlib import Path  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from kuberl.config import ExperimentConfig, LearnerSpec, load_manifest, to_proto  # noqa: E402
from kuberl.environment.core import Actor  # noqa: E402
from kuberl.envs import describe  # noqa: E402
from kuberl.local import LOOPBACK, free_port  # noqa: E402
from kuberl.nets import DoubleDQN, QNetwork  # noqa: E402
from kuberl.rpc import channel, stub, use_tls, wait_until_serving  # noqa: E402
from kuberl.security import Identity, TlsFiles, authority_in, issue_identity  # noqa: E402
from kuberl.tensors import Transitions, pack_transitions  # noqa: E402
from kuberl.v1 import buffer_service_pb2 as buffer_pb  # noqa: E402
from kuberl.v1 import buffer_service_pb2_grpc as buffer_grpc  # noqa: E402
from kuberl.v1 import learner_service_pb2 as learner_pb  # noqa: E402
from kuberl.v1 import learner_service_pb2_grpc as learner_grpc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples" / "cartpole.yaml"
ROWS = ("env", "buffer", "learner", "metrics", "solve", "tasks", "scaling", "cluster", "cluster-scaling")
# The largest learningStarts the config accepts (LearnerSpec.learning_starts maximum); on one
# shard it makes the limiter's warm-up (min_inserts) and tolerance 1e8 inserts, i.e. no hold-back.
NO_HOLDBACK_LEARNING_STARTS = 100_000_000

TARGET_BUFFER = ">= 200 000 /s"
TARGET_LEARNER = ">= 1 000 /s at batch 64"


def note(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Row:
    what: str
    setting: str
    result: str
    unit: str
    target: str = ""


def fmt_num(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}".replace(",", " ")


def print_table(rows: list[Row], title: str) -> None:
    headers = ("what", "setting", "result", "unit", "target")
    cells = [headers] + [(r.what, r.setting, r.result, r.unit, r.target) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(c: tuple[str, ...]) -> str:
        parts = [f" {c[0]:<{widths[0]}} ", f" {c[1]:<{widths[1]}} ", f" {c[2]:>{widths[2]}} ",
                 f" {c[3]:<{widths[3]}} ", f" {c[4]:<{widths[4]}} "]
        return "|" + "|".join(parts) + "|"

    print(f"\n{title}")
    print(rule)
    print(line(headers))
    print(rule)
    for c in cells[1:]:
        print(line(c))
    print(rule, flush=True)


# --- helpers -------------------------------------------------------------------------------

def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


class RoleProcess:
    """One `kuberl serve ROLE` child on loopback; stop() terminates it and waits."""

    def __init__(self, role: str, workdir: Path, peers: dict[str, str] | None = None, tls: TlsFiles | None = None):
        self.role = role
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.log_path = workdir / f"{role}-{self.port}.log"
        # Peers not given point at a free, unused port (the metrics reporter then just logs warnings).
        unused = f"{LOOPBACK}:{free_port()}"
        peers = peers or {}
        args = [sys.executable, "-m", "kuberl.cli", "serve", role, "--host", LOOPBACK, "--port", str(self.port),
                "--node-name", f"bench-{role}", "--data-dir", str(workdir / f"{role}-{self.port}"),
                "--database", f"sqlite:///{workdir / 'analytics.db'}", "--log-level", "WARNING",
                *(["--tls-dir", str(tls.directory)] if tls else ["--insecure"])]
        for peer in ("environment", "buffer", "analytics", "learner", "policy"):
            args += [f"--{peer}", peers.get(peer, unused)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                            start_new_session=True)

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.role} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                wait_until_serving(self.address, min(1.0, max(0.1, deadline - time.monotonic())), self.role)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.role} not serving after {timeout:.0f}s:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stop_all(procs: list[RoleProcess]) -> None:
    for p in procs:  # SIGTERM everyone first, then wait for each
        if p.process.poll() is None:
            p.process.terminate()
    for p in procs:
        p.stop()


def base_config() -> ExperimentConfig:
    return load_manifest(MANIFEST).config


_DATA: dict[int, Transitions] = {}


def cartpole_transitions(n: int) -> Transitions:
    """n real CartPole-v1 transitions from a random-acting Actor (obs float32[4], actions int64, ...)."""
    if n not in _DATA:
        cfg = base_config().replace(environment={"envs_per_replica": 64})
        actor = Actor(cfg, actor_index=7)
        parts, rows = [], 0
        try:
            while rows < n:
                step = actor.step().transitions
                parts.append(step)
                rows += step.rows
        finally:
            actor.close()
        batch = Transitions.concatenate(parts)
        _DATA[n] = Transitions(*(col[:n].copy() for col in batch))
    return _DATA[n]


# --- row 1: actor core ---------------------------------------------------------------------

def bench_env(seconds: float) -> list[Row]:
    cfg = base_config()
    rows = []
    for envs in (cfg.environment.envs_per_replica, 64):
        actor = Actor(cfg.replace(environment={"envs_per_replica": envs}))
        try:
            for _ in range(20):  # warm-up
                actor.step()
            start_steps = actor.env_steps
            t0 = time.perf_counter()
            vec = 0
            while True:
                actor.step()
                vec += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= seconds:
                    break
            steps = actor.env_steps - start_steps
        finally:
            actor.close()
        note(f"env: {envs} envs: {steps} transitions in {elapsed:.2f}s ({vec} vector steps), eps {actor.epsilon:.3f}")
        source = "envsPerReplica of cartpole.yaml" if envs == cfg.environment.envs_per_replica else "override"
        rows.append(Row("env steps/s per actor", f"CartPole-v1, {envs} envs ({source}), "
                        f"{fmt_num(vec / elapsed)} vector steps/s", fmt_num(steps / elapsed), "transitions/s"))
    return rows


# --- row 2: buffer shard -------------------------------------------------------------------

def buffer_config(capacity: int) -> ExperimentConfig:
    """One shard, warm-up and tolerance of 1e8 inserts (the limiter never holds an insert back),
    snapshots off (the measurement is the insert path, not a periodic 1M-row .npz write)."""
    return base_config().replace(buffer={"replicas": 1, "capacity": capacity, "snapshot_interval_seconds": 0.0},
                                 learner={"learning_starts": NO_HOLDBACK_LEARNING_STARTS})


def bench_buffer(seconds: float, workdir: Path) -> list[Row]:
    """Each batch size over plaintext and over mutual TLS (the default), the ratio beside."""
    authority = authority_in(workdir / "bench-tls")
    server = issue_identity(authority, workdir / "bench-tls" / "buffer", Identity("buffer"))
    client = issue_identity(authority, workdir / "bench-tls" / "admin", Identity("admin"))
    plain = _bench_buffer_transport(seconds, workdir, None, None)
    secure = _bench_buffer_transport(seconds, workdir, server, client)
    rows: list[Row] = []
    for batch_rows in plain:
        rows += [*plain[batch_rows][0], *secure[batch_rows][0]]
        rows.append(Row("  mutual TLS / plaintext", f"{batch_rows} rows/push, same run",
                        f"{secure[batch_rows][1] / plain[batch_rows][1]:.2f}", "x", ">= 0.90"))
    return rows


def _bench_buffer_transport(seconds: float, workdir: Path, server_tls: TlsFiles | None,
                            client_tls: TlsFiles | None) -> dict[int, tuple[list[Row], float]]:
    """batch rows -> (rows of the table, transitions/s) through one buffer process."""
    transport = "mutual TLS" if server_tls else "plaintext"
    out: dict[int, tuple[list[Row], float]] = {}
    data = cartpole_transitions(4096)
    proc = RoleProcess("buffer", workdir, tls=server_tls)
    use_tls(client_tls)
    try:
        proc.wait_serving()
        api = stub(buffer_grpc.BufferServiceStub, proc.address)
        experiment = "bench-buffer"
        api.OpenReplay(buffer_pb.OpenReplayRequest(experiment_id=experiment, config=to_proto(buffer_config(1_000_000))),
                       timeout=30)
        # Fill the ring once so that every measurement sees the steady state (pages touched, wrapping).
        fill = buffer_pb.PushTransitionsRequest(experiment_id=experiment, batch=pack_transitions(data))
        while api.PushTransitions(fill, timeout=30).stats.size < 1_000_000:
            pass
        for batch_rows in (256, 1024, 4096):  # 256: what an actor pushes by default
            batch = Transitions(*(col[:batch_rows] for col in data))
            request = buffer_pb.PushTransitionsRequest(experiment_id=experiment, batch=pack_transitions(batch))
            request_bytes = request.ByteSize()
            # One channel (own TCP connection) per client thread, like separate actors.
            channels = [channel(proc.address, "buffer", client_tls, (("grpc.use_local_subchannel_pool", 1),))
                        for _ in range(2)]
            try:
                stubs = [buffer_grpc.BufferServiceStub(ch) for ch in channels]
                for s in stubs:  # warm-up: connect
                    for _ in range(3):
                        s.PushTransitions(request, timeout=30)
                before = api.GetStats(buffer_pb.GetStatsRequest(experiment_id=experiment), timeout=10).stats
                counts = [0, 0]
                errors: list[str] = []
                start = threading.Barrier(3)
                deadline = [0.0]

                def client(i: int) -> None:
                    start.wait()
                    try:
                        while time.perf_counter() < deadline[0]:
                            stubs[i].PushTransitions(request, timeout=30)
                            counts[i] += 1
                    except grpc.RpcError as err:
                        errors.append(f"{err.code().name}: {err.details()}")

                threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
                for t in threads:
                    t.start()
                deadline[0] = time.perf_counter() + seconds
                t0 = time.perf_counter()
                start.wait()
                for t in threads:
                    t.join()
                elapsed = time.perf_counter() - t0
                after = api.GetStats(buffer_pb.GetStatsRequest(experiment_id=experiment), timeout=10).stats
            finally:
                for ch in channels:
                    ch.close()
            pushes = sum(counts)
            accepted = after.total_inserted - before.total_inserted
            note(f"buffer ({transport}): {batch_rows} rows/push: {pushes} pushes in {elapsed:.2f}s, shard counted "
                 f"{accepted} inserted (client counted {pushes * batch_rows}), size {after.size}, "
                 f"{request_bytes} B/request" + (f", errors: {errors}" if errors else ""))
            setting = f"{batch_rows} rows/push, {transport}, 2 client threads, capacity 1M, no hold-back, no snapshots"
            if errors:
                setting += f" (ERRORS: {errors[0]})"
            rate = accepted / elapsed
            out[batch_rows] = ([
                Row("buffer shard, transitions/s accepted over loopback", setting, fmt_num(rate), "transitions/s",
                    TARGET_BUFFER),
                Row("  same, bytes", f"{batch_rows} rows/push ({fmt_num(request_bytes)} B/request)",
                    fmt_num(pushes * request_bytes / elapsed / 1e6, 1), "MB/s")], rate)
    finally:
        use_tls(None)
        stop_all([proc])
    return out


# --- row 3: learner ------------------------------------------------------------------------

def learner_config(batch_size: int) -> ExperimentConfig:
    return base_config().replace(buffer={"replicas": 1, "capacity": 50_000, "snapshot_interval_seconds": 0.0},
                                 learner={"batch_size": batch_size, "hidden_sizes": [64, 64]})


def learner_core_rate(lc: LearnerSpec, seconds: float) -> float:
    """Updates/s of the DoubleDQN core for this learner config on pre-sampled CartPole batches."""
    shape = describe("CartPole-v1")
    data = cartpole_transitions(20_000)
    rng = np.random.default_rng(0)
    dqn = DoubleDQN(QNetwork.of(lc, shape.obs_size, shape.num_actions), learning_rate=lc.learning_rate,
                    gamma=lc.gamma, max_grad_norm=lc.max_grad_norm, target_update_interval=lc.target_update_interval,
                    seed=0)
    batches = [Transitions(*(col[idx] for col in data))
               for idx in (rng.integers(0, data.rewards.shape[0], lc.batch_size) for _ in range(256))]
    for b in batches[:20]:  # warm-up
        dqn.update(b)
    n = 0
    t0 = time.perf_counter()
    while True:
        dqn.update(batches[n % len(batches)])
        n += 1
        if n % 16 == 0 and time.perf_counter() - t0 >= seconds:
            break
    return n / (time.perf_counter() - t0)


def bench_learner_core(seconds: float) -> list[Row]:
    rows = []
    for batch_size in (64, 256):
        rate = learner_core_rate(learner_config(batch_size).learner, seconds)
        note(f"learner core: batch {batch_size}: {rate:.0f} updates/s")
        rows.append(Row("learner updates/s (DoubleDQN core, in-process)",
                        f"batch {batch_size}, hidden [64, 64], pre-sampled batches", fmt_num(rate),
                        "updates/s", TARGET_LEARNER if batch_size == 64 else ""))
    return rows


def bench_learner_process(num_updates: int, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    data = cartpole_transitions(20_000)
    buffer = RoleProcess("buffer", workdir)
    policy = RoleProcess("policy", workdir)
    procs = [buffer, policy]
    try:
        buffer.wait_serving()
        policy.wait_serving()
        learner = RoleProcess("learner", workdir, peers={"buffer": buffer.address, "policy": policy.address})
        procs.append(learner)
        learner.wait_serving()
        buffer_api = stub(buffer_grpc.BufferServiceStub, buffer.address)
        learner_api = stub(learner_grpc.LearnerServiceStub, learner.address)
        for batch_size in (64, 256):
            # A learner keeps the config an experiment first arrived with, so each batch size
            # is its own experiment (own replay table of 20 000 transitions).
            experiment = f"bench-learner-b{batch_size}"
            cfg = learner_config(batch_size)
            buffer_api.OpenReplay(buffer_pb.OpenReplayRequest(
                experiment_id=experiment,
                config=to_proto(cfg.replace(learner={"learning_starts": NO_HOLDBACK_LEARNING_STARTS}))), timeout=30)
            for i in range(0, data.rewards.shape[0], 4096):
                buffer_api.PushTransitions(buffer_pb.PushTransitionsRequest(
                    experiment_id=experiment, batch=pack_transitions(Transitions(*(c[i:i + 4096] for c in data)))),
                    timeout=30)
            config = to_proto(cfg)
            learner_api.TrainStep(learner_pb.TrainStepRequest(experiment_id=experiment, config=config,
                                                              num_updates=64), timeout=120)  # warm-up, creates the run
            t0 = time.perf_counter()
            reply = learner_api.TrainStep(learner_pb.TrainStepRequest(experiment_id=experiment, config=config,
                                                                      num_updates=num_updates), timeout=600)
            client_seconds = time.perf_counter() - t0
            note(f"learner process: batch {batch_size}: {num_updates} updates, reply.seconds {reply.seconds:.2f}, "
                 f"client-side {client_seconds:.2f}s, buffer size {reply.stats.buffer_size}, "
                 f"policy version {reply.stats.policy_version}")
            rows.append(Row("learner process updates/s (incl. split-merge sampling over gRPC)",
                            f"batch {batch_size}, TrainStep({num_updates}), 1 shard of 20 000",
                            fmt_num(num_updates / reply.seconds), "updates/s",
                            TARGET_LEARNER if batch_size == 64 else ""))
    finally:
        stop_all(procs)
    return rows


# --- row 4: kuberl run ---------------------------------------------------------------------

_STEPS = re.compile(r"^\s*env steps\s+([0-9]+)", re.M)


def _insert_rate(store, batch: int, seconds: float) -> float:
    from kuberl.analytics.core import Point

    written, started, step = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        store.write("bench-node", "environment", [Point("bench", "charts/episodic_return", float(i), step + i)
                                                 for i in range(batch)])
        written += batch
        step += batch
    return written / (time.perf_counter() - started)


def bench_metrics(seconds: float, workdir: Path) -> list[Row]:
    """Metric points inserted per second by each analytics backend, one ReportMetrics batch per write."""
    from kuberl.analytics.core import open_store

    sys.path.insert(0, str(ROOT))
    from tests import mariadb as mariadb_server

    backends = {"SQLite (file, WAL)": lambda: f"sqlite:///{workdir / 'metrics-bench.db'}"}
    server = None
    reason = mariadb_server.available()
    if reason is None:
        server = mariadb_server.MariaDB.create()
        os.environ["KUBERL_DATABASE_PASSWORD"] = mariadb_server.PASSWORD
        backends["MariaDB (loopback TCP)"] = lambda: server.url("bench")
    rows = []
    try:
        for name, url in backends.items():
            store = open_store(url())
            try:
                _insert_rate(store, 100, 0.2)  # schema, ids and caches warm
                for batch in (100, 1000):
                    rate = _insert_rate(store, batch, seconds)
                    rows.append(Row("metrics inserted/s", f"{name}, batch of {batch}", fmt_num(rate), "points/s"))
            finally:
                store.close()
    finally:
        if server is not None:
            server.destroy()
    if reason is not None:
        rows.append(Row("metrics inserted/s", f"MariaDB: {reason}", "-", ""))
    return rows


# --- row 5: learning, beside Stable-Baselines3 in the same run ------------------------------

SOLVE_WHAT = "CartPole-v1, kuberl run examples/cartpole.yaml"
SB3_WHAT = "Stable-Baselines3 DQN, rl-zoo CartPole-v1 hyperparameters"
SB3_ANCHOR = ROOT / "bench" / "sb3_anchor.py"
SB3_BUDGET = 50_000  # rl-zoo's n_timesteps for CartPole-v1
# A run whose update thread waited for batches this share of the time (median over its
# seconds) was held by its data, the samples-per-insert limit or sampling, not by the update.
HELD_BY_DATA = 0.10
FRESH_EPISODES, FRESH_SEED = 100, 555_555_555  # seeds neither kuberl's evaluations nor its confirmation use
_UPDATES = re.compile(r"^\s*updates\s+([0-9]+)", re.M)


@dataclass
class KuberlRun:
    seed: int
    exit_code: int
    wall: float  # process start to exit, measured here
    solved_at: int | None  # env steps of the first evaluation at or above the target
    env_steps: int
    updates: int
    result_return: float | None  # the result's confirmation, as the summary reports it
    fresh_return: float | None  # the result, evaluated again here on other seeds
    updates_per_second: float | None  # the learner's median during the run
    waiting_for_data: float | None  # median share of each second the update thread had no batch


def run_kuberl(seed: int, workdir: Path, timeout: float) -> KuberlRun:
    from kuberl.analytics.core import Query, SQLiteStore
    from kuberl.learner.core import evaluate
    from kuberl.policy.core import PolicyStore

    manifest = yaml.safe_load(MANIFEST.read_text())
    manifest["spec"]["seed"] = seed
    path, out = workdir / f"cartpole-{seed}.yaml", workdir / f"solve-{seed}"
    path.write_text(yaml.safe_dump(manifest))
    args = [sys.executable, "-m", "kuberl.cli", "run", str(path), "--no-progress", "--output", str(out),
            "--timeout", str(timeout)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(), text=True,
                            cwd=ROOT)
    try:
        stdout, _ = proc.communicate(timeout=timeout + 180)
    finally:
        if proc.poll() is None:
            # SIGINT first: `kuberl run` then stops the experiment and its role processes.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode:
        note(f"kuberl run seed {seed}: exit {proc.returncode}; output tail:\n" + "\n".join(stdout.splitlines()[-15:]))
    cfg = load_manifest(path).config
    experiment = f"default/{manifest['metadata']['name']}"
    store = SQLiteStore(out / "analytics.db")
    try:
        evals, _ = store.query(Query(experiment, "charts/eval_return"))
        rates, _ = store.query(Query(experiment, "learner/updates_per_second"))
        waits, _ = store.query(Query(experiment, "learner/waiting_for_data"))
    finally:
        store.close()
    target = describe(cfg.env_id).reward_threshold
    solved_at = next((p.step for p in evals if p.value >= target), None)
    policy = PolicyStore(out / "policy-0")
    result = policy.result(experiment)
    policy.close()
    fresh = None
    if result is not None:
        shape = describe(cfg.env_id)
        fresh = evaluate(QNetwork.of(cfg.learner, shape.obs_size, shape.num_actions), result.weights, cfg.env_id,
                         FRESH_EPISODES, cfg.environment.max_episode_steps, seed=FRESH_SEED)
    steps, updates = _STEPS.search(stdout), _UPDATES.search(stdout)
    return KuberlRun(seed, proc.returncode, wall, solved_at, int(steps.group(1)) if steps else 0,
                     int(updates.group(1)) if updates else 0,
                     result.evaluation.mean_return if result else None, fresh,
                     statistics.median(p.value for p in rates) if rates else None,
                     statistics.median(p.value for p in waits) if waits else None)


def sb3_python(choice: str | None) -> str | None:
    """The interpreter that has Stable-Baselines3: --sb3-python, $KUBERL_BENCH_SB3_PYTHON, or this one."""
    for candidate in (choice, os.environ.get("KUBERL_BENCH_SB3_PYTHON"), sys.executable):
        if candidate and subprocess.run([candidate, "-c", "import stable_baselines3"], capture_output=True).returncode == 0:
            return candidate
    return None


def run_sb3(python: str, seed: int) -> dict:
    done = subprocess.run([python, str(SB3_ANCHOR), "--env", "CartPole-v1", "--seed", str(seed),
                           "--budget", str(SB3_BUDGET)], capture_output=True, text=True, env=child_env(), check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median_steps(values: list[int | None]) -> float:
    """Median env steps to solve; a run that never solved counts as infinitely many."""
    return statistics.median(math.inf if v is None else v for v in values)


def _steps(x: float) -> str:
    return "never" if math.isinf(x) else fmt_num(x)


def bench_solve(seeds: list[int], workdir: Path, timeout: float, sb3: str | None, seconds: float) -> list[Row]:
    runs = []
    for seed in seeds:
        run = run_kuberl(seed, workdir, timeout)
        note(f"kuberl seed {seed}: exit {run.exit_code}, {run.wall:.1f}s, solved at {run.solved_at}, result "
             f"{run.result_return}, fresh {run.fresh_return}, {run.updates_per_second} updates/s")
        runs.append(run)
    anchors = []
    if sb3 is not None:
        for seed in seeds:
            anchors.append(run_sb3(sb3, seed))
            note(f"sb3 seed {seed}: {anchors[-1]}")
    rows = [Row(SOLVE_WHAT, f"seed {r.seed}: {'solved' if r.exit_code == 0 else f'exit {r.exit_code}'}, first eval "
                f">= 475 at {r.solved_at} env steps, result {r.result_return} (fresh {FRESH_EPISODES}: "
                f"{r.fresh_return if r.fresh_return is None else round(r.fresh_return, 1)})", f"{r.wall:.1f}", "s wall")
            for r in runs]
    rows += [Row(SB3_WHAT, f"seed {a['seed']}: first eval >= 475 at {a['solved_at']} env steps",
                 f"{a['train_seconds']:.1f}", "s training") for a in anchors]
    solved = sum(r.exit_code == 0 for r in runs)
    ours = _median_steps([r.solved_at for r in runs])
    theirs = _median_steps([a["solved_at"] for a in anchors]) if anchors else None
    ratio = f", {ours / theirs:.2f}x" if theirs and math.isfinite(theirs) and math.isfinite(ours) else ""
    sb3_solved = sum(a["solved_at"] is not None for a in anchors)
    anchor = f"SB3 {_steps(theirs)} ({sb3_solved}/{len(anchors)} solved){ratio}" if anchors else "SB3 not installed"
    rows.append(Row("goal 1: median env steps to the first evaluation >= 475", f"{solved}/{len(runs)} solved; {anchor}",
                    _steps(ours), "env steps", "<= SB3's, 5/5"))
    wall = statistics.median(r.wall for r in runs)
    sb3_wall = statistics.median(a["train_seconds"] for a in anchors) if anchors else None
    rows.append(Row("goal 2: median wall, process start to exit",
                    f"SB3 training {sb3_wall:.1f} s, {wall / sb3_wall:.2f}x" if sb3_wall else "SB3 not installed",
                    f"{wall:.1f}", "s", "<= 0.33x SB3's"))
    cfg = load_manifest(MANIFEST).config
    core = learner_core_rate(cfg.learner, seconds)
    during = [r.updates_per_second for r in runs if r.updates_per_second]
    waits = [r.waiting_for_data for r in runs if r.waiting_for_data is not None]
    held = [w >= HELD_BY_DATA for w in waits]
    rows.append(Row("goal 2: learner updates/s during the run, of its in-process rate",
                    f"median {fmt_num(statistics.median(during)) if during else '?'}/s of {fmt_num(core)}/s in-process; "
                    + (f"update thread waiting for data {statistics.median(waits):.0%} of the time (median), "
                       f"held by data in {sum(held)}/{len(waits)} runs" if waits else "no waiting_for_data recorded"),
                    f"{statistics.median(during) / core:.2f}" if during else "?", "x", ">= 0.70x unless data held it"))
    fresh = [r.fresh_return for r in runs if r.fresh_return is not None]
    rows.append(Row("goal 3: the result scored on 100 fresh episodes",
                    f"worst of {len(fresh)} results (the runs' own confirmations: "
                    f"{', '.join(str(r.result_return) for r in runs)})", f"{min(fresh):.1f}" if fresh else "?",
                    "mean return", ">= 475 every run"))
    return rows


# --- row 6: the four classic tasks ----------------------------------------------------------

TASKS = {"CartPole-v1": ("cartpole.yaml", 475.0, 50_000), "Acrobot-v1": ("acrobot.yaml", -100.0, 100_000),
         "MountainCar-v0": ("mountaincar.yaml", -110.0, 300_000), "LunarLander-v3": ("lunarlander.yaml", 200.0, 500_000)}


def bench_tasks(tasks: list[str], seeds: list[int], workdir: Path, sb3: str | None) -> list[Row]:
    """Each task's example manifest on each seed within its budget: solved or not, at how many env
    steps, and the result's confirmed score; beside SB3 (rl-zoo) trained for the same budget."""
    from kuberl.analytics.core import Query, SQLiteStore
    from kuberl.policy.core import PolicyStore

    rows = []
    for env_id in tasks:
        file, target, budget = TASKS[env_id]
        for seed in seeds:
            manifest = yaml.safe_load((ROOT / "examples" / file).read_text())
            manifest["spec"]["seed"] = seed
            manifest["spec"]["stop"]["maxEnvSteps"] = budget
            path, out = workdir / f"{file}-{seed}", workdir / f"task-{file}-{seed}"
            path.write_text(yaml.safe_dump(manifest))
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "kuberl.cli", "run", str(path), "--no-progress", "--output",
                                   str(out), "--timeout", "3600"], capture_output=True, text=True, env=child_env(),
                                  cwd=ROOT)
            wall = time.perf_counter() - t0
            experiment = f"default/{manifest['metadata']['name']}"
            store = SQLiteStore(out / "analytics.db")
            try:
                evals, _ = store.query(Query(experiment, "charts/eval_return"))
            finally:
                store.close()
            policy = PolicyStore(out / "policy-0")
            result = policy.result(experiment)
            policy.close()
            solved_at = next((p.step for p in evals if p.value >= target), None)
            score = f"{result.evaluation.mean_return:.1f} over {result.evaluation.episodes}" if result else "none"
            rows.append(Row(f"{env_id} (target {target:g} in {fmt_num(budget)} env steps)",
                            f"kuberl seed {seed}: {'solved' if done.returncode == 0 else f'exit {done.returncode}'}, "
                            f"first eval at target {solved_at}, result {score}", f"{wall:.0f}", "s wall"))
            note(rows[-1].setting)
        if sb3 is not None:
            for seed in seeds:
                anchor = subprocess.run([sb3, str(SB3_ANCHOR), "--env", env_id, "--seed", str(seed), "--budget",
                                         str(budget), "--to-budget"], capture_output=True, text=True, env=child_env(),
                                        check=True)
                a = json.loads(anchor.stdout.strip().splitlines()[-1])
                rows.append(Row(f"{env_id} (target {target:g} in {fmt_num(budget)} env steps)",
                                f"SB3 seed {seed}: first eval at target {a['solved_at']}, last eval {a['last_score']:.1f}",
                                f"{a['train_seconds']:.0f}", "s training"))
                note(rows[-1].setting)
    return rows


# --- row 7: scaling actors ----------------------------------------------------------------

SCALING_WHAT = "env steps/s with N actor processes and N shards"
SCALING_STEPS = 60_000
_RATE = re.compile(r"^\s*env steps\s+[0-9]+.*\(([0-9]+)/s this run\)", re.M)


def scaling_manifest(actors: int, workdir: Path, steps: int = SCALING_STEPS) -> Path:
    """The CartPole example with N actors and N shards, the learner held to a trickle
    (samplesPerInsert 1: a batch per 64 inserts) so that it never holds the actors back, and no target to stop at."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    spec = manifest["spec"]
    spec["environment"]["replicas"] = spec["buffer"]["replicas"] = actors
    spec["learner"]["samplesPerInsert"] = 1.0
    spec["stop"] = {"targetReturn": 1e9, "maxEnvSteps": steps}
    path = workdir / f"scaling-{actors}.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def bench_scaling(workdir: Path, timeout: float) -> list[Row]:
    rates = {}
    for actors in (1, 2):
        path = scaling_manifest(actors, workdir)
        done = subprocess.run([sys.executable, "-m", "kuberl.cli", "run", str(path), "--no-progress", "--output",
                               str(workdir / f"scaling-{actors}"), "--timeout", str(timeout)], capture_output=True,
                              text=True, env=child_env(), cwd=ROOT, timeout=timeout + 120)
        rate = _RATE.search(done.stdout)
        if rate is None:
            note(f"scaling {actors}: no rate in the summary:\n{done.stdout[-1500:]}")
            return [Row(SCALING_WHAT, f"{actors} actors: the run printed no rate (exit {done.returncode})", "-", "")]
        rates[actors] = float(rate.group(1))
        note(f"scaling {actors} actors: {rates[actors]:.0f} env steps/s")
    per_actor = rates[1]
    rows = [Row(SCALING_WHAT, f"{n} actor{'s' * (n > 1)} x {base_config().environment.envs_per_replica} envs, "
                f"{n} shard{'s' * (n > 1)}, learner at samplesPerInsert 1, {os.cpu_count()} cores",
                fmt_num(rate), "env steps/s") for n, rate in rates.items()]
    rows.append(Row(SCALING_WHAT, f"model N x {fmt_num(per_actor)}/s (one core per actor pod) against the measured "
                    f"2: {rates[2] / (2 * per_actor):.2f} of it here, where 2 actors, 2 shards and the rest share "
                    f"{os.cpu_count()} cores", fmt_num(2 * per_actor), "env steps/s"))
    for n in (4, 16, 64):
        rows.append(Row(SCALING_WHAT, f"model: {n} actor pods (and {n} shards), a core each", fmt_num(n * per_actor),
                        "env steps/s"))
    return rows


# --- row 8: the same manifest on a cluster -------------------------------------------------

CLUSTER_WHAT = "examples/cartpole.yaml by kubectl apply"


@contextlib.contextmanager
def installed_release() -> Iterator[Any]:
    """The chart installed as the end-to-end suite installs it (release `kuberl-bench` in its own
    namespace) on the cluster the tests use, started for the row and stopped after it if it is the
    local one; yields the Release, or None (and says why) when there is no cluster."""
    sys.path.insert(0, str(ROOT))
    from tests import kube
    from tests.docker import engine
    from tests.e2e.release import CHART, Release, helm_values
    from tests.localcluster import cluster as local_cluster
    from tests.localcluster import images, lifecycle

    choice = kube.choose()
    if choice.kind == "none":
        note(f"no cluster: {choice.detail}")
        yield None
        return
    started_cluster = False
    if choice.kind == "local":
        layout, started_cluster = lifecycle.ensure_up(log=note)
    target = kube.TestCluster.for_choice(choice)
    release = Release(target, namespace="kuberl-bench")
    try:
        engine.ensure_engine()
        base = engine.ensure_base_image()
        image, _ = engine.build_project_image(base)
        mariadb = images.mariadb_image(base)
        for tag in (image, mariadb):
            target.load_image(tag)
        target.ensure_namespace(release.namespace)
        target.helm("upgrade", "--install", "kuberl-bench", str(CHART), "--namespace", release.namespace,
                    *helm_values(image, mariadb), "--wait", "--timeout", "10m")
        yield release
    finally:
        target.helm("uninstall", "kuberl-bench", "--namespace", release.namespace, "--wait", check=False)
        target.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)
        if started_cluster:
            local_cluster.down(layout, log=note)


def bench_cluster(runs: int, timeout: float) -> list[Row]:
    """The example applied `runs` times: seconds from `kubectl apply` to the first transition
    the learner reports and to the status phase Succeeded (which lags by the operator's 5 s)."""
    rows = []
    with installed_release() as release:
        if release is None:
            return [Row(CLUSTER_WHAT, "no cluster (see stderr)", "-", "")]
        firsts, solved = [], []
        for i in range(runs):
            # A name of its own each run: the policy role keeps an experiment's weights by name, and
            # a re-created `cartpole` would start from the last run's.
            doc = yaml.safe_load(MANIFEST.read_text())
            name = doc["metadata"]["name"] = f"cartpole-{i + 1}"
            started = time.monotonic()
            release.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
            first, status = None, {}
            while time.monotonic() - started < timeout:
                status = release.status(name)
                if status.get("phase") in ("Succeeded", "Failed"):
                    break
                if first is None and release.ready_pods(name, "learner"):
                    try:
                        if release.learner_stats(name)["env_steps"] > 0:
                            first = time.monotonic() - started
                    except AssertionError:  # not serving yet
                        pass
                time.sleep(0.5)
            done = time.monotonic() - started
            phase = status.get("phase", "?")
            note(f"cluster run {i + 1}/{runs}: first transition {first}, {phase} after {done:.1f}s, "
                 f"{status.get('envSteps')} env steps")
            rows.append(Row(CLUSTER_WHAT, f"run {i + 1}/{runs}, first transition", f"{first:.1f}" if first else "?",
                            "s"))
            rows.append(Row(CLUSTER_WHAT, f"run {i + 1}/{runs}, {phase}, {status.get('envSteps', '?')} env steps",
                            f"{done:.1f}", "s"))
            if first is not None:
                firsts.append(first)
            if phase == "Succeeded":
                solved.append(done)
            release.kubectl("delete", "rlx", name, "--wait=true", "--timeout=120s")
        if firsts:
            rows.append(Row(CLUSTER_WHAT, f"median of {len(firsts)}, first transition",
                            f"{statistics.median(firsts):.1f}", "s"))
        if solved:
            rows.append(Row(CLUSTER_WHAT, f"median of {len(solved)}, Succeeded", f"{statistics.median(solved):.1f}",
                            "s"))
    return rows


CLUSTER_SCALING_WHAT = "env steps/s with N actor pods and N shard pods (cluster)"
CLUSTER_SCALING_PODS = (1, 2, 3)
CLUSTER_SCALING_STEPS = 300_000


def steady_rate(samples: list[tuple[float, int]], budget: int) -> float | None:
    """Env steps/s between the first sample past a tenth of the budget and the last one short of
    nine tenths: the pods' start and the run's end left out."""
    window = [(t, steps) for t, steps in samples if 0.1 * budget <= steps <= 0.9 * budget]
    if len(window) < 2 or window[-1][0] <= window[0][0]:
        return None
    return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])


def bench_cluster_scaling(workdir: Path, timeout: float) -> list[Row]:
    """The scaling manifest (learner at a trickle, no target) with 1, 2 and 3 actor pods and as
    many shard pods, for CLUSTER_SCALING_STEPS. The rate is read from the status's envSteps,
    which the operator refreshes every 5 s: each change is timed when the bench sees it, over the
    middle of the budget. (Probing the learner by kubectl exec would start a Python in its pod
    every time, taking the CPU it measures.) The model is N times the 1-pod rate."""
    rates: dict[int, float] = {}
    with installed_release() as release:
        if release is None:
            return [Row(CLUSTER_SCALING_WHAT, "no cluster (see stderr)", "-", "")]
        for pods in CLUSTER_SCALING_PODS:
            doc = yaml.safe_load(scaling_manifest(pods, workdir, CLUSTER_SCALING_STEPS).read_text())
            name = doc["metadata"]["name"] = f"scaling-{pods}"
            release.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
            started, samples, status = time.monotonic(), [], {}
            while time.monotonic() - started < timeout:
                status = release.status(name)
                steps = int(status.get("envSteps") or 0)
                if steps and (not samples or steps != samples[-1][1]):
                    samples.append((time.monotonic(), steps))
                if status.get("phase") in ("Succeeded", "Failed"):
                    break
                time.sleep(0.5)
            release.kubectl("delete", "rlx", name, "--wait=true", "--timeout=120s")
            rate = steady_rate(samples, CLUSTER_SCALING_STEPS)
            note(f"cluster scaling {pods} pods: {rate} env steps/s from {len(samples)} samples {samples}; "
                 f"{status.get('phase')}: {status.get('message')}")
            if rate is None:
                return [Row(CLUSTER_SCALING_WHAT, f"{pods} pods: too few status samples ({len(samples)})", "-", "")]
            rates[pods] = rate
    one = rates[1]
    rows = [Row(CLUSTER_SCALING_WHAT, f"{n} actor pod{'s' * (n > 1)} x {base_config().environment.envs_per_replica} "
                f"envs, {n} shard pod{'s' * (n > 1)}, learner at samplesPerInsert 1, {os.cpu_count()} cores",
                fmt_num(rate), "env steps/s") for n, rate in rates.items()]
    for n in CLUSTER_SCALING_PODS[1:]:
        rows.append(Row(CLUSTER_SCALING_WHAT, f"model N x {fmt_num(one)}/s against the measured {n}: "
                        f"{rates[n] / (n * one):.2f} of it on {os.cpu_count()} cores", fmt_num(n * one),
                        "env steps/s"))
    return rows


# --- main ----------------------------------------------------------------------------------

def parse_only(values: list[str] | None) -> list[str]:
    if not values:  # the tasks row trains four tasks to their budgets (an hour or more): asked for by name
        return [r for r in ROWS if r != "tasks"]
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"--only: unknown row(s) {unknown}; known: {', '.join(ROWS)}")
    return [r for r in ROWS if r in names]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter durations and 1 solve run")
    p.add_argument("--only", nargs="+", metavar="ROW", help=f"rows to run, of: {', '.join(ROWS)}")
    p.add_argument("--solve-runs", type=int, default=None, help="seeds of the solve row (default 5, --quick 1)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="the tasks row's tasks")
    p.add_argument("--task-seeds", type=int, default=None, help="seeds per task (default 3)")
    p.add_argument("--sb3-python", default=None, help="an interpreter with stable-baselines3 for the anchor "
                                                      "(default: $KUBERL_BENCH_SB3_PYTHON, or this one if it has it)")
    p.add_argument("--solve-timeout", type=float, default=600.0, help="seconds before a kuberl run gives up")
    args = p.parse_args(argv)
    only = parse_only(args.only)
    solve_runs = args.solve_runs if args.solve_runs is not None else (1 if args.quick else 5)
    env_s, buffer_s, learner_s = (0.5, 1.0, 0.5) if args.quick else (2.0, 3.0, 2.0)
    train_updates = 500 if args.quick else 2000

    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kuberl-bench-") as tmp:
        workdir = Path(tmp)
        steps = {
            "env": lambda: bench_env(env_s),
            "buffer": lambda: bench_buffer(buffer_s, workdir),
            "learner": lambda: bench_learner_core(learner_s) + bench_learner_process(train_updates, workdir),
            "metrics": lambda: bench_metrics(buffer_s, workdir),
            "solve": lambda: bench_solve(list(range(1, solve_runs + 1)), workdir, args.solve_timeout,
                                         sb3_python(args.sb3_python), learner_s),
            "tasks": lambda: bench_tasks(args.tasks, list(range(1, (args.task_seeds or 3) + 1)), workdir,
                                         sb3_python(args.sb3_python)),
            "scaling": lambda: bench_scaling(workdir, args.solve_timeout),
            "cluster": lambda: bench_cluster(solve_runs, args.solve_timeout),
            "cluster-scaling": lambda: bench_cluster_scaling(workdir, args.solve_timeout),
        }
        for name in only:
            note(f"--- {name}")
            try:
                rows += steps[name]()
            except Exception as err:  # a failed measurement is reported, the others still run
                note(f"{name} failed: {type(err).__name__}: {err}")
                rows.append(Row(f"{name} (FAILED)", f"{type(err).__name__}: {str(err).splitlines()[0][:100]}",
                                "-", ""))
    total = time.perf_counter() - started
    print_table(rows, f"kuberl bench ({'quick' if args.quick else 'full'}, {os.cpu_count()} cores, "
                      f"Python {sys.version.split()[0]}, numpy {np.__version__}, grpcio {grpc.__version__})")
    print(f"total runtime {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
