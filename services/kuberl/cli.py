"""`kuberl serve ROLE` runs one role; `kuberl run FILE.yaml` runs a whole experiment locally."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from kuberl.config import ConfigError
from kuberl.exitcodes import ExitCode
from kuberl.roles import DEFAULT_PORTS, DEFAULT_RESULT_RETENTION_SECONDS, ROLES, checked_retention



def _env(name: str, default: str) -> str:
    return os.environ.get(f"KUBERL_{name}", default)


def _retention(text: str) -> float:
    """--result-retention-seconds (and its env variable, a string default argparse converts too)."""
    try:
        return checked_retention(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run one role as a gRPC server",
                       description="Run one role. Peer addresses are host:port lists; a DNS name stands for every "
                                   "replica it resolves to (a headless Service). Each flag also reads KUBERL_<NAME>.")
    p.add_argument("role", choices=ROLES)
    p.add_argument("--port", type=int, default=None, help="listen port (default: the role's seed port; 0 = any)")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"),
                   help="listen address (default loopback; the image sets KUBERL_HOST=[::])")
    p.add_argument("--insecure", action="store_true", default=_env("INSECURE", "") == "1",
                   help="serve plaintext with no authentication or authorization (env KUBERL_INSECURE=1); "
                        "without it a role needs --tls-dir")
    p.add_argument("--reflection", action="store_true", default=_env("REFLECTION", "") == "1",
                   help="offer gRPC server reflection (to authenticated clients)")
    p.add_argument("--health-port", type=int, default=int(_env("HEALTH_PORT", "0")) or None,
                   help="also serve the health service alone, plaintext, on this port (for the kubelet's probes, "
                        "which present no certificate)")
    p.add_argument("--dashboard-port", type=int, default=int(_env("DASHBOARD_PORT", "-1")),
                   help="experiment role: serve the live dashboard on this port (0 = any; default: none)")
    p.add_argument("--dashboard-host", default=_env("DASHBOARD_HOST", "127.0.0.1"),
                   help="the dashboard's listen address (default loopback: it needs no identity to read)")
    p.add_argument("--metrics-port", type=int, default=int(_env("METRICS_PORT", "-1")),
                   help="serve Prometheus metrics at /metrics on this port, plaintext and read-only (0 = any; "
                        "default: none)")
    for role in ("environment", "buffer", "analytics", "learner", "policy"):
        p.add_argument(f"--{role}", default=_env(f"{role.upper()}_ADDRESS", f"localhost:{DEFAULT_PORTS[role]}"),
                       help=f"{role} replicas (env KUBERL_{role.upper()}_ADDRESS)")
    p.add_argument("--data-dir", type=Path, default=Path(_env("DATA_DIR", "kuberl-data")),
                   help="buffer and policy snapshots go here")
    p.add_argument("--result-retention-seconds", type=_retention,
                   default=_env("RESULT_RETENTION_SECONDS", str(DEFAULT_RESULT_RETENTION_SECONDS)),
                   help="policy and analytics roles: how long a released (deleted) experiment's result and metrics "
                        "stay, in seconds (default: 7 days; 0: forgotten at release)")
    p.add_argument("--max-replay-tables", type=int, default=int(_env("MAX_REPLAY_TABLES", "64")),
                   help="buffer role: experiments one shard holds at most (RESOURCE_EXHAUSTED beyond)")
    p.add_argument("--max-replay-bytes", type=int, default=int(_env("MAX_REPLAY_BYTES", "0")) or None,
                   help="buffer role: memory its replay rings may take (default: 3/4 of its cgroup's memory "
                        "limit, a pod's, else of the machine's)")
    p.add_argument("--database", default=_env("DATABASE_URL", "sqlite:///kuberl-data/analytics.db"),
                   help="analytics store: sqlite:///PATH or mysql://USER@HOST:PORT/DATABASE (password from "
                        "KUBERL_DATABASE_PASSWORD or the file named by KUBERL_DATABASE_PASSWORD_FILE)")
    p.add_argument("--node-name", default=_env("NODE_NAME", ""), help="name this replica reports metrics as")
    p.add_argument("--port-file", type=Path, help="write the bound port here once serving (for launchers)")
    p.add_argument("--lifeline-fd", type=int, default=None,
                   help="stop, as on SIGTERM, when this inherited pipe's other end closes: a launcher holds it, so "
                        "its roles stop when it dies, even by SIGKILL (for launchers)")
    p.add_argument("--kubernetes-namespace", default=os.environ.get("KUBERL_KUBERNETES_NAMESPACE"),
                   help="experiment role only: keep experiments as RLExperiment objects in this namespace "
                        "(cluster mode) instead of driving the roles itself")
    p.add_argument("--experiment", type=Path, default=None,
                   help="an RLExperiment manifest to serve from the start (cluster mode: the operator's ConfigMap); "
                        "environment, buffer and learner follow changes to the file")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))
    _tls_argument(p, "this role's identity")


def _tls_argument(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument("--tls-dir", type=Path, default=os.environ.get("KUBERL_TLS_DIR") or None,
                   help=f"{whose}: a directory with ca.crt, tls.crt and tls.key (a kubernetes.io/tls Secret's "
                        "layout; env KUBERL_TLS_DIR); kuberl run makes one under RUN_DIR/tls/")


def _use_tls(args: argparse.Namespace, reflection: bool = False, health_port: int | None = None) -> None:
    from kuberl.rpc import use_tls
    from kuberl.security import TlsFiles

    files = TlsFiles(args.tls_dir) if args.tls_dir else None
    if files is not None:
        files.identity()  # a directory that is missing or names nobody is refused here, with why
    use_tls(files, reflection, health_port)


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run an RLExperiment manifest locally, every role its own process",
                       description="Start every role on loopback as the manifest's spec says, drive the experiment, "
                                   "show progress, print a summary and write the learning curve.")
    p.add_argument("manifest", type=Path)
    p.add_argument("--output", type=Path, default=None,
                   help="directory for logs, snapshots, the metrics database and the curve (default: kuberl-runs/NAME)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="print a status line every few seconds instead of a bar")
    p.add_argument("--dashboard", action="store_true",
                   help="serve the live dashboard on loopback while the run lasts (its address is printed)")
    p.add_argument("--database", default=os.environ.get("KUBERL_DATABASE_URL"),
                   help="metrics store URL (env KUBERL_DATABASE_URL; default: SQLite in the output directory); "
                        "a MySQL password comes from KUBERL_DATABASE_PASSWORD(_FILE)")
    p.add_argument("--resume", nargs="?", type=Path, const=True, default=None, metavar="DIR",
                   help="continue a run from its replay and weight snapshots: DIR, or the newest run of this "
                        "manifest (default: a fresh run; a taken output directory gets a new name)")


def _status_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show experiments through the experiment API",
                       description="List experiments (or show one) as the experiment role reports them.")
    p.add_argument("experiment_id", nargs="?", help="one experiment (default: all)")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table",
                   help="table (default), or every field as JSON or YAML (a list, camelCase as the API's JSON)")
    _client_arguments(p, 10.0, "your identity (a reader's or an admin's)")


def _client_arguments(p: argparse.ArgumentParser, timeout: float, whose: str) -> None:
    """What a command that calls the experiment API takes: where it is, how long to wait, as whom."""
    p.add_argument("--address", default=_env("EXPERIMENT_ADDRESS", f"localhost:{DEFAULT_PORTS['experiment']}"),
                   help="the experiment role (env KUBERL_EXPERIMENT_ADDRESS)")
    p.add_argument("--timeout", type=float, default=timeout)
    _tls_argument(p, whose)


def _standing_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run a standing local system until Ctrl-C; experiments come through the API",
                       description="Every role on loopback, supervised: M environment and N buffer replicas and "
                                   "one of each other role. Prints the experiment API's address and the admin "
                                   "identity that kuberl start, status and stop use.")
    p.add_argument("--environments", type=int, default=2, metavar="M", help="environment replicas (default 2)")
    p.add_argument("--buffers", type=int, default=2, metavar="N", help="buffer replicas (default 2)")
    p.add_argument("--experiment-port", type=int, default=DEFAULT_PORTS["experiment"],
                   help=f"the experiment API's port (default {DEFAULT_PORTS['experiment']}, the seed's; 0 = any)")
    p.add_argument("--dir", type=Path, default=Path("kuberl-system"),
                   help="logs, snapshots, certificates, the metrics database (default kuberl-system/)")
    p.add_argument("--database", default=os.environ.get("KUBERL_DATABASE_URL"),
                   help="metrics store URL (default: SQLite in --dir)")
    p = sub.add_parser("start", help="start an RLExperiment manifest on a standing system (kuberl up)",
                       description="Start the manifest's experiment through the experiment API; its id is "
                                   "NAMESPACE/NAME as kuberl status lists it.")
    p.add_argument("manifest", type=Path)
    _client_arguments(p, 60.0, "your identity (an admin's: kuberl up prints it)")
    p = sub.add_parser("stop", help="stop an experiment (its replay, weights and metrics are kept until delete)",
                       description="Stop the experiment; NAME is its id as kuberl status lists it, or a name in "
                                   "the default namespace.")
    p.add_argument("experiment_id", metavar="NAME")
    _client_arguments(p, 60.0, "your identity (an admin's)")


def start(args: argparse.Namespace) -> int:
    import grpc

    from kuberl.config import load_manifest, to_proto
    from kuberl.v1 import experiment_service_pb2 as pb

    try:
        manifest = load_manifest(args.manifest)
    except ConfigError as err:
        print(f"kuberl start: {args.manifest}: invalid manifest: {err}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        reply = _experiment_api(args).StartExperiment(
            pb.StartExperimentRequest(experiment_id=manifest.experiment_id, config=to_proto(manifest.config)),
            timeout=args.timeout)
    except grpc.RpcError as err:
        return _call_failed("start", args.address, args.tls_dir, err)
    print(f"{reply.experiment_id} started on {', '.join(reply.environment_replicas)}")
    return ExitCode.OK


def stop(args: argparse.Namespace) -> int:
    import grpc

    from kuberl.config import scoped_experiment_id
    from kuberl.experiment.server import phase_name
    from kuberl.v1 import experiment_service_pb2 as pb

    api = _experiment_api(args)
    try:
        known = {s.experiment_id for s in api.ListExperiments(pb.ListExperimentsRequest(),
                                                              timeout=args.timeout).experiments}
        # A bare name is the default namespace's, as kuberl start names experiments.
        in_default = scoped_experiment_id("default", args.experiment_id)
        experiment_id = in_default if args.experiment_id not in known and in_default in known else args.experiment_id
        status = api.StopExperiment(pb.StopExperimentRequest(experiment_id=experiment_id), timeout=args.timeout).status
    except grpc.RpcError as err:
        return _call_failed("stop", args.address, args.tls_dir, err)
    print(f"{status.experiment_id}: {phase_name(status.phase)}")
    return ExitCode.OK


def _delete_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("delete", help="delete a finished or stopped experiment and everything it holds",
                       description="Stop the experiment if it runs, then have every role release its replay, "
                                   "weights, training run and metrics; its id may then start a new experiment. "
                                   "In a cluster: kubectl delete rlx NAME.")
    p.add_argument("experiment_id")
    _client_arguments(p, 60.0, "your identity (an admin's)")


def _trained_parsers(sub: argparse._SubParsersAction) -> None:
    for name, help_text in (("evaluate", "score a trained policy on fresh episodes: mean and spread"),
                            ("play", "render a trained policy's episodes to a GIF and print their returns"),
                            ("export", "write a trained policy's weights as a numpy .npz (README: loading it)")):
        p = sub.add_parser(name, help=help_text, description=f"{help_text[0].upper()}{help_text[1:]}. The policy is "
                           "the experiment's result (its best evaluated version), else its newest version.")
        p.add_argument("run", help="a run directory (kuberl-runs/NAME-2), an experiment NAME (its newest run), or "
                                   "with --policy the experiment's id, NAMESPACE/NAME or manifest")
        p.add_argument("--policy", default=None, metavar="ADDRESS",
                       help="fetch the weights from this policy role (a cluster's: port-forward it) instead; a "
                            "deleted experiment's result stays there for the role's retention (kuberl results)")
        p.add_argument("--experiment-id", default=None,
                       help="with --policy: the id the roles know it by (a cluster's: NAMESPACE/NAME#UID8, the "
                            "RLExperiment's status.experimentId); default: the manifest's")
        p.add_argument("-o", "--output", type=Path, default=None,
                       help={"evaluate": "also write the figures here as JSON",
                             "play": "the GIF (default: RUN_DIR/play.gif, or NAME-play.gif)",
                             "export": "the file (default: RUN_DIR/policy.npz or .onnx, or NAME-policy.npz or "
                                       ".onnx)"}[name])
        if name == "export":
            p.add_argument("--format", choices=("npz", "onnx"), default="npz",
                           help="npz: numpy arrays and JSON metadata (default); onnx: an ONNX model with inputs obs, "
                                "outputs q_values and action (pip install 'kuberl[onnx]')")
        else:
            p.set_defaults(format=None)
            p.add_argument("--episodes", type=int, default=100 if name == "evaluate" else 3)
            p.add_argument("--seed", type=int, default=None, help="first episode's seed (default: one no training or "
                                                                  "evaluation used)")
        _tls_argument(p, "with --policy: your identity (a reader's or an admin's)")


def _results_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="list the results a policy role holds, or delete a deleted experiment's",
                       description="List the results (best evaluated weights) a policy role holds: of running "
                                   "experiments, and of deleted ones, kept for the role's retention "
                                   "(--result-retention-seconds; the chart's resultRetentionSeconds). "
                                   "kuberl evaluate|play|export --policy uses them.")
    p.add_argument("--policy", default=_env("POLICY_ADDRESS", f"localhost:{DEFAULT_PORTS['policy']}"),
                   metavar="ADDRESS", help="the policy role (a cluster's: port-forward it; env KUBERL_POLICY_ADDRESS)")
    p.add_argument("--delete", metavar="EXPERIMENT_ID", default=None,
                   help="forget this deleted experiment's result now (an admin's identity)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("--timeout", type=float, default=30.0)
    _tls_argument(p, "your identity (a reader's; an admin's to delete)")


def results(args: argparse.Namespace) -> int:
    import time

    import grpc

    from kuberl import trained as t
    from kuberl.rpc import stub
    from kuberl.v1 import policy_service_pb2 as pb
    from kuberl.v1 import policy_service_pb2_grpc as pb_grpc

    try:
        if args.delete:
            stub(pb_grpc.PolicyServiceStub, args.policy).DeleteResult(
                pb.DeleteResultRequest(experiment_id=args.delete), timeout=args.timeout)
            print(f"result of {args.delete} deleted")
            return ExitCode.OK
        held = t.held_results(args.policy, args.timeout)
    except grpc.RpcError as err:
        return _call_failed("results", args.policy, args.tls_dir, err)
    if args.output == "json":  # numbers stay numbers (proto JSON quotes int64s); times not known are null
        print(json.dumps([{"experimentId": r.experiment_id, "envId": r.env_id, "version": r.version,
                           "evaluation": {"meanReturn": r.evaluation.mean_return, "episodes": r.evaluation.episodes,
                                          "envSteps": r.evaluation.env_steps},
                           "releasedAtSeconds": r.released_at_seconds or None,
                           "expiresAtSeconds": r.expires_at_seconds or None} for r in held], indent=2))
        return ExitCode.OK
    print(f"{'EXPERIMENT':<36} {'ENV':<16} {'VERSION':>7} {'RETURN':>8} {'EPISODES':>8} {'STEPS':>9} {'KEPT UNTIL':<20}")
    for r in held:
        until = "(running)" if not r.released_at_seconds else \
            time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(r.expires_at_seconds))
        e = r.evaluation
        print(f"{r.experiment_id:<36} {r.env_id:<16} {r.version:>7} {e.mean_return:>8.1f} {e.episodes:>8} "
              f"{e.env_steps:>9} {until:<20}")
    return ExitCode.OK


def trained(args: argparse.Namespace) -> int:
    import grpc
    from gymnasium.error import DependencyNotInstalled

    from kuberl import trained as t

    written = {"play": "play.gif", "export": f"policy.{args.format}"}.get(args.command, "")
    try:
        if args.policy:
            from kuberl.config import load_manifest
            manifest = load_manifest(Path(args.run)) if Path(args.run).is_file() else None
            policy = t.from_policy_role(args.policy, manifest, args.experiment_id or (None if manifest else args.run))
            default = Path(f"{policy.manifest.name}-{written}")
        else:
            run_dir = t.run_directory(args.run)
            policy = t.from_run(run_dir)
            default = run_dir / written
    except ConfigError as err:
        print(f"kuberl {args.command}: {args.run}: invalid manifest: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except (FileNotFoundError, ValueError) as err:
        print(f"kuberl {args.command}: {err}", file=sys.stderr)
        return ExitCode.USAGE
    except grpc.RpcError as err:
        return _call_failed(args.command, args.policy, args.tls_dir, err)
    print(f"kuberl {args.command}: {policy.manifest.name} ({policy.manifest.config.env_id}): {policy.label}",
          file=sys.stderr)
    if args.command == "export" and args.format == "onnx":
        try:
            print(t.export_onnx(policy, args.output or default))
        except ImportError as err:
            print(f"kuberl export: {err}; ONNX needs pip install 'kuberl[onnx]'", file=sys.stderr)
            return ExitCode.USAGE
        return ExitCode.OK
    if args.command == "export":
        print(t.export(policy, args.output or default))
        return ExitCode.OK
    if args.episodes < 1:
        print(f"kuberl {args.command}: --episodes: must be >= 1, got {args.episodes}", file=sys.stderr)
        return ExitCode.USAGE
    seed = t.FRESH_SEED if args.seed is None else args.seed
    if args.command == "play":
        out = args.output or default
        try:
            returns = t.play(policy, out, args.episodes, seed)
        except (ImportError, DependencyNotInstalled) as err:
            print(f"kuberl play: {err}; drawing needs pip install 'kuberl[render]'", file=sys.stderr)
            return ExitCode.USAGE
        print(f"{out}: {len(returns)} episodes, returns {', '.join(f'{r:.1f}' for r in returns)}")
        return ExitCode.OK
    returns = t.fresh_returns(policy, args.episodes, seed)
    figures = {"episodes": len(returns), "mean": float(returns.mean()), "std": float(returns.std()),
               "min": float(returns.min()), "max": float(returns.max()), "first_seed": seed,
               "policy_version": policy.version, "is_result": policy.is_result}
    print(f"{len(returns)} fresh episodes: mean {figures['mean']:.1f} +- {figures['std']:.1f} "
          f"(min {figures['min']:.1f}, max {figures['max']:.1f})")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=1) + "\n")
    return ExitCode.OK


def _cert_parser(sub: argparse._SubParsersAction) -> None:
    from kuberl.security import IDENTITIES

    p = sub.add_parser("cert", help="issue a certificate for one identity (a TLS directory) from a CA",
                       description="Write ca.crt, tls.crt and tls.key for one identity into OUT, signed by the CA "
                                   "in --ca (made there if it has none). A role's certificate also serves as its "
                                   "server's. See the README's security section for who may call what.")
    p.add_argument("out", type=Path, help="the TLS directory to write (pass it as --tls-dir)")
    p.add_argument("--ca", type=Path, required=True, help="the CA's directory (ca.crt, ca.key)")
    p.add_argument("--identity", choices=IDENTITIES, required=True)
    p.add_argument("--experiment", default=None,
                   help="act for this experiment only (its id as the roles know it: NAMESPACE/NAME#UID8 in a "
                        "cluster, the manifest's name locally)")


def cert(args: argparse.Namespace) -> int:
    from kuberl.security import Identity, authority_in, issue_identity

    identity = Identity(args.identity, args.experiment)
    files = issue_identity(authority_in(args.ca), args.out, identity)
    print(f"{files.directory}: {identity} ({identity.uri})")
    return ExitCode.OK


def _experiment_api(args: argparse.Namespace) -> Any:
    """The experiment API at --address, called as the identity _use_tls set."""
    from kuberl.rpc import stub
    from kuberl.v1 import experiment_service_pb2_grpc

    return stub(experiment_service_pb2_grpc.ExperimentServiceStub, args.address)


def _call_failed(command: str, address: str, tls_dir: Path | None, err: Any) -> int:
    hint = ""
    if err.code().name == "UNAVAILABLE" and tls_dir is None:
        hint = " (a server with TLS refuses plaintext: pass --tls-dir, e.g. kuberl-runs/NAME/tls/admin)"
    print(f"kuberl {command}: {address}: {err.code().name}: {err.details()}{hint}", file=sys.stderr)
    return ExitCode.API_FAILED


def delete(args: argparse.Namespace) -> int:
    import grpc

    from kuberl.v1 import experiment_service_pb2 as pb

    try:
        _experiment_api(args).DeleteExperiment(
            pb.DeleteExperimentRequest(experiment_id=args.experiment_id), timeout=args.timeout)
    except grpc.RpcError as err:
        return _call_failed("delete", args.address, args.tls_dir, err)
    print(f"{args.experiment_id} deleted")
    return ExitCode.OK


def status(args: argparse.Namespace) -> int:
    import grpc

    from kuberl.experiment.server import phase_name, status_fields
    from kuberl.v1 import experiment_service_pb2 as pb

    api = _experiment_api(args)
    try:
        if args.experiment_id:
            rows = [api.GetExperimentStatus(pb.GetExperimentStatusRequest(experiment_id=args.experiment_id),
                                            timeout=args.timeout).status]
        else:
            rows = list(api.ListExperiments(pb.ListExperimentsRequest(), timeout=args.timeout).experiments)
    except grpc.RpcError as err:
        return _call_failed("status", args.address, args.tls_dir, err)
    if args.output != "table":
        listing = [status_fields(s) for s in rows]
        if args.output == "json":
            print(json.dumps(listing, indent=2))
        else:
            import yaml
            print(yaml.safe_dump(listing, sort_keys=False), end="")
        return ExitCode.OK
    print(f"{'EXPERIMENT':<24} {'PHASE':<10} {'ENV':<16} {'STEPS':>9} {'EPISODES':>8} {'RETURN':>8} {'EVAL':>8} "
          f"{'RESULT':>8}")
    for s in rows:
        print(f"{s.experiment_id:<24} {phase_name(s.phase):<10} {s.env_id:<16} {s.env_steps:>9} {s.episodes:>8} "
              f"{s.mean_return:>8.1f} {s.eval_return:>8.1f} {s.result_return:>8.1f}")
    return ExitCode.OK


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {args.role} %(levelname)s %(name)s: %(message)s")
    if args.lifeline_fd is not None:
        try:
            os.fstat(args.lifeline_fd)
        except OSError as err:  # else the watcher would read an error as its launcher's death
            print(f"kuberl serve {args.role}: --lifeline-fd {args.lifeline_fd}: {err.strerror}", file=sys.stderr)
            return ExitCode.USAGE
        from kuberl.rpc import stop_when_closed
        stop_when_closed(args.lifeline_fd)
    if not args.insecure and args.tls_dir is None:
        print(f"kuberl serve {args.role}: no identity: pass --tls-dir (or KUBERL_TLS_DIR), or --insecure to serve "
              "plaintext with no authentication", file=sys.stderr)
        return ExitCode.USAGE
    try:
        _use_tls(args, args.reflection, args.health_port)
    except ValueError as err:
        print(f"kuberl serve {args.role}: {err}", file=sys.stderr)
        return ExitCode.USAGE
    port = DEFAULT_PORTS[args.role] if args.port is None else args.port
    node_name = args.node_name or f"{args.role}-{socket.gethostname()}-{port}"
    from kuberl.metrics import MetricsReporter
    from kuberl.rpc import serve_until_signalled

    def reporter() -> MetricsReporter:
        return MetricsReporter(args.analytics, node_name, args.role)

    if args.role == "policy":
        from kuberl.policy.server import PolicyMetrics as Metrics
        from kuberl.policy.server import create_server
        server, replica = create_server(port, args.host, data_dir=args.data_dir,
                                        result_retention_seconds=args.result_retention_seconds)
        stop = replica.close
    elif args.role == "analytics":
        from kuberl.analytics.server import AnalyticsMetrics as Metrics
        from kuberl.analytics.server import create_server
        server, replica = create_server(port, args.database, args.host,
                                        result_retention_seconds=args.result_retention_seconds)
        stop = replica.close
    elif args.role == "buffer":
        from kuberl.buffer.server import BufferMetrics as Metrics
        from kuberl.buffer.server import create_server
        server, replica = create_server(port, args.data_dir, reporter(), args.host, args.max_replay_tables,
                                        args.max_replay_bytes)
        stop = replica.stop
    elif args.role == "environment":
        from kuberl.environment.server import EnvironmentMetrics as Metrics
        from kuberl.environment.server import create_server
        server, replica = create_server(port, args.buffer, args.policy, reporter(), args.host)
        stop = replica.stop
    elif args.role == "learner":
        from kuberl.learner.server import LearnerMetrics as Metrics
        from kuberl.learner.server import create_server
        server, replica = create_server(port, args.buffer, args.policy, reporter(), args.host)
        stop = replica.stop
    else:
        from kuberl.experiment.server import ExperimentMetrics as Metrics
        from kuberl.experiment.server import Peers, create_server
        peers = Peers(args.environment, args.buffer, args.learner, args.policy, args.analytics)
        server, replica = create_server(port, peers, args.host, kubernetes_namespace=args.kubernetes_namespace)
        stop = replica.close
    if args.dashboard_port >= 0:
        if args.role != "experiment":
            print(f"kuberl serve {args.role}: --dashboard-port is the experiment role's", file=sys.stderr)
            return ExitCode.USAGE
        from kuberl.dashboard import Dashboard
        from kuberl.experiment.server import status_fields
        dashboard = Dashboard(args.dashboard_port, args.dashboard_host,
                              lambda: [status_fields(s) for s in replica.list_statuses()], args.analytics)
        logging.getLogger("kuberl").info("dashboard at %s", dashboard.url)
    if args.metrics_port >= 0:
        from kuberl.prometheus import serve_metrics
        metrics_port = serve_metrics(args.metrics_port, args.host, Metrics(replica))
        logging.getLogger("kuberl").info("metrics at http://%s:%d/metrics", args.host, metrics_port)
    if args.experiment is not None:
        try:
            _serve_experiment_file(args, replica, node_name)
        except ConfigError as err:
            logging.getLogger("kuberl").error("%s: invalid experiment: %s", args.experiment, err)
            return ExitCode.USAGE
    server.start()
    server.set_serving()
    logging.getLogger("kuberl").info("%s serving on port %d as %s", args.role, server.port, node_name)
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(server.port))
        tmp.replace(args.port_file)
    serve_until_signalled(server, stop)
    return ExitCode.OK


def _serve_experiment_file(args: argparse.Namespace, replica: object, node_name: str) -> None:
    """Serves the file's experiment at once, and follows its changes."""
    from kuberl.autostart import ExperimentFile, actor_index

    if args.role in ("buffer", "learner"):
        follow = replica.follow
    elif args.role == "environment":
        index = actor_index(node_name)

        def follow(manifest):
            replica.follow(manifest, index)
    else:
        raise SystemExit(f"kuberl serve {args.role}: --experiment is for environment, buffer and learner")
    watcher = ExperimentFile(args.experiment, follow)
    follow(watcher.current)
    watcher.start()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kuberl")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kuberl", description=__doc__,
                                     epilog="Exit codes: " + ", ".join(f"{c.value} {c.name.lower().replace('_', ' ')}"
                                                                      for c in ExitCode) + ".")
    parser.add_argument("--version", action="version", version=f"kuberl {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _run_parser(sub)
    _status_parser(sub)
    _delete_parser(sub)
    _cert_parser(sub)
    _trained_parsers(sub)
    _results_parser(sub)
    _standing_parsers(sub)
    args = parser.parse_args(argv)
    try:
        if args.command in ("status", "delete", "start", "stop", "results") or getattr(args, "policy", None):
            _use_tls(args)
    except ValueError as err:
        print(f"kuberl {args.command}: {err}", file=sys.stderr)
        return ExitCode.USAGE
    if args.command == "serve":
        return serve(args)
    if args.command == "status":
        return status(args)
    if args.command == "delete":
        return delete(args)
    if args.command == "cert":
        return cert(args)
    if args.command in ("evaluate", "play", "export"):
        return trained(args)
    if args.command == "results":
        return results(args)
    if args.command == "start":
        return start(args)
    if args.command == "stop":
        return stop(args)
    from kuberl.local import listen_port_range, run_manifest, run_standing_system
    try:
        listen_port_range()  # the range its roles' ports come from: refused before anything starts
    except ConfigError as err:
        print(f"kuberl {args.command}: {err}", file=sys.stderr)
        return ExitCode.USAGE
    if args.command == "up":
        return run_standing_system(args.dir, args.environments, args.buffers, args.experiment_port, args.database)
    return run_manifest(args.manifest, args.output, timeout=args.timeout, progress=not args.no_progress,
                        database_url=args.database, resume=args.resume, dashboard=args.dashboard)


if __name__ == "__main__":
    sys.exit(main())
