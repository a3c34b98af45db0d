"""The chart installed on a real cluster, and the means to look inside its running roles: their
gRPC stats read from inside their pods (`kubectl exec`), never by sending to pod or Service
addresses from outside. Used by the end-to-end suite and by bench/run_bench.py."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kuberl.config import scoped_experiment_id
from kuberl.crd import API_GROUP, PLURAL, VERSION
from tests.conftest import REPO
from tests.kube import TestCluster
from tests.waiting import wait_for

NAMESPACE = "kuberl-e2e"
RELEASE = "kuberl"
CHART = REPO / "charts" / "kuberl"
SMALL_NODE = CHART / "ci" / "small-node-values.yaml"
# The operator's observation interval (the chart's operator.observationIntervalSeconds, at its
# default): status may lag the roles by this. 2 s ran the suite slower (1 333 s against 778 s for
# e2e), most likely as the API server re-applied every experiment's children 2.5x as often on 2 cores.
OBSERVATION_SECONDS = 5.0
CRASH_LOOP_RESTART_LIMIT = 2

# Run inside a role's pod, over mutual TLS as that pod: its stats as JSON (GetLearnerStats on a
# learner, GetStats on a shard, the newest version GetPolicy names on the policy role).
PROBE = """
import json, os, sys
from pathlib import Path
from google.protobuf.json_format import MessageToDict
from kuberl.rpc import stub, use_tls
from kuberl.security import TlsFiles
if os.path.exists("/etc/kuberl-tls/tls.crt"):  # where every kuberl pod mounts its identity
    use_tls(TlsFiles(Path("/etc/kuberl-tls")))  # a replica may read its own kind's state
from kuberl.v1 import buffer_service_pb2 as b, buffer_service_pb2_grpc as bg
from kuberl.v1 import learner_service_pb2 as l, learner_service_pb2_grpc as lg
from kuberl.v1 import policy_service_pb2 as p, policy_service_pb2_grpc as pg
role, experiment = sys.argv[1:3]
if role == "policy":
    reply = stub(pg.PolicyServiceStub, "localhost:50056").GetPolicy(
        p.GetPolicyRequest(experiment_id=experiment, newer_than_version=2**62), timeout=5)
elif role == "learner":
    reply = stub(lg.LearnerServiceStub, "localhost:50054").GetLearnerStats(
        l.GetLearnerStatsRequest(experiment_id=experiment), timeout=5).stats
else:
    reply = stub(bg.BufferServiceStub, "localhost:50051").GetStats(
        b.GetStatsRequest(experiment_id=experiment), timeout=5).stats
print(json.dumps(MessageToDict(reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)))
"""
INTEGER_FIELDS = ("latest_version", "updates", "policy_version", "env_steps", "buffer_size", "shards", "size", "capacity",
                  "total_inserted", "total_sampled")


@dataclass
class Release:
    cluster: TestCluster
    namespace: str = NAMESPACE

    def kubectl(self, *args: str, **kw):
        return self.cluster.kubectl(*args, namespace=self.namespace, **kw)

    def get(self, *args: str) -> dict:
        return self.cluster.get_json(*args, namespace=self.namespace)

    def rlx(self, name: str) -> dict:
        return self.get("rlx", name)

    def status(self, name: str) -> dict:
        return self.rlx(name).get("status") or {}

    def conditions(self, name: str) -> dict[str, dict]:
        return {c["type"]: c for c in self.status(name).get("conditions", [])}

    def pods(self, experiment: str, role: str) -> list[dict]:
        selector = f"kuberl.dev/experiment={experiment},app.kubernetes.io/component={role}"
        return [p for p in self.get("pods", "-l", selector)["items"] if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, experiment: str, role: str) -> list[dict]:
        return [p for p in self.pods(experiment, role)
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]

    def experiment_id(self, name: str) -> str:
        """What the experiment's roles know it by: scoped by namespace and the object's uid."""
        return scoped_experiment_id(self.namespace, name, self.rlx(name)["metadata"]["uid"])

    def stats(self, pod: str, role: str, experiment: str) -> dict:
        return self.probe(pod, role, self.experiment_id(experiment))

    def probe(self, pod: str, role: str, experiment_id: str) -> dict:
        done = self.kubectl("exec", pod, "--", "python", "-c", PROBE, role, experiment_id, timeout=60)
        stats = json.loads(done.stdout)
        return {k: int(v) if k in INTEGER_FIELDS else v for k, v in stats.items()}

    def learner_stats(self, experiment: str) -> dict:
        # A learner answers before the kubelet marks its pod Ready (the probe's period), so the
        # status may say Running a few seconds before there is a ready pod to ask.
        (pod,) = wait_for(lambda: self.ready_pods(experiment, "learner"), 60, f"a ready {experiment} learner pod")
        return self.stats(pod["metadata"]["name"], "learner", experiment)

    def replicas(self, experiment: str) -> dict[str, int]:
        kinds = {"environment": "deployment", "buffer": "statefulset", "learner": "deployment"}
        return {role: self.get(kind, f"{experiment}-{role}")["spec"]["replicas"] for role, kind in kinds.items()}

    def table_row(self, name: str) -> tuple[dict[str, object], dict]:
        """The RLExperiment as the Table `kubectl get` asks the API server for (cells by column
        name), with the object those cells were computed from: one read, so a status write
        cannot fall between the two."""
        client = self.cluster.api_client()
        try:
            request = client.param_serialize(
                "GET", f"/apis/{API_GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}/{name}",
                query_params=[("includeObject", "Object")],
                header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
            response = client.call_api(*request[:4], _request_timeout=30)
            response.read()
            table = json.loads(response.data)
        finally:
            client.close()
        (row,) = table["rows"]
        return {c["name"]: cell for c, cell in zip(table["columnDefinitions"], row["cells"])}, row["object"]

    def printed(self, name: str) -> dict[str, str | None]:
        """`kubectl get rlx NAME` as column -> cell (None where the cell is empty), cut at the
        header's column starts: an empty cell leaves no word to split on."""
        header, row = self.kubectl("get", "rlx", name).stdout.splitlines()
        starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
        cells = [row[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        return {header[a:].split()[0]: cell or None for a, cell in zip(starts, cells)}


def helm_values(image: str, mariadb: str) -> list[str]:
    repository, tag = image.rsplit(":", 1)
    mariadb_repository, mariadb_tag = mariadb.rsplit(":", 1)
    return ["-f", str(SMALL_NODE), "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never", "--set", f"mysql.image.repository={mariadb_repository}",
            "--set-string", f"mysql.image.tag={mariadb_tag}", "--set", "mysql.image.pullPolicy=Never",
            "--set", f"experiments.crashLoopRestartLimit={CRASH_LOOP_RESTART_LIMIT}",
            "--set", f"operator.observationIntervalSeconds={OBSERVATION_SECONDS:g}"]


def wait_phase(release: Release, name: str, phase: str, timeout: float) -> dict:
    return wait_for(lambda: release.status(name).get("phase") == phase and release.status(name), timeout,
                    f"{name} to be {phase}", interval=1.0)
