"""The Helm chart charts/kuberl, rendered by real Helm 3 and Helm 4 (binaries from tests/tools.py).

Every rendered object is accepted by a real API server (server-side dry run, strict field
validation) and by the OpenAPI schemas of the chart's oldest Kubernetes; then the properties that matter are
asserted on the objects: hardened pods, gRPC probes, the operator's image and addresses, no
database password outside its Secret, labels, least-privilege RBAC, NetworkPolicies that cover
the chart's pods and the operator's children (built by the operator's own builders), and a
values.schema.json that refuses unknown keys and wrong types.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import tools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kuberl"
CRD_PATH = CHART / "crds" / "rlexperiments.kuberl.dev.yaml"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
HELMS = ("3", "4")
# Not "kuberl": the server-side dry runs create the chart's ClusterRoles, which would meet those
# of a release a user (or the e2e suite) has installed under the usual name.
RELEASE, NAMESPACE = "kuberl-dry-run", "rl"
FULLNAME = RELEASE  # the release name contains the chart name: helm create's rule
GRPC_PORTS = {"experiment": 50053, "policy": 50056, "analytics": 50052}
METRICS_PORT = 9090  # values.yaml metrics.port
CHILD_PORTS = {"environment": 50050, "buffer": 50051, "learner": 50054}
STANDARD_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                   "app.kubernetes.io/part-of", "app.kubernetes.io/component")  # fmt: skip
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
WORKLOADS = ("Deployment", "StatefulSet")


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _helm_or_skip(version: str) -> None:
    try:
        tools.helm_binaries()
    except tools.ToolInstallError as exc:  # no network for pip download, wrong architecture
        from tests.conftest import skip_or_fail

        skip_or_fail(f"Helm {version} unavailable: {exc}")


@functools.cache
def _render(helm: str, *args: str) -> tuple[int, str, str]:
    _helm_or_skip(helm)
    result = tools.helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    return result.returncode, result.stdout, result.stderr


def render(helm: str, *args: str) -> list[dict]:
    """The rendered objects (hooks included); fails the test with Helm's output on an error."""
    code, out, err = _render(helm, *args)
    assert code == 0, f"helm {helm} template {' '.join(args)} failed:\n{err}"
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def render_error(helm: str, *args: str) -> str:
    code, _out, err = _render(helm, *args)
    assert code != 0, f"helm {helm} template {' '.join(args)} should have failed"
    return err


def values_args(path: Path | None) -> tuple[str, ...]:
    return ("-f", str(path)) if path else ()


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(what, pod labels, pod spec) of every workload's template and every bare Pod."""
    out = []
    for doc in docs:
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in WORKLOADS:
            template = doc["spec"]["template"]
            out.append((what, template["metadata"]["labels"], template["spec"]))
        elif doc["kind"] == "Pod":
            out.append((what, doc["metadata"]["labels"], doc["spec"]))
    return out


def env_of(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def container(docs: list[dict], kind: str, name: str) -> dict:
    (only,) = one(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    return only


VARIANTS = {
    "default": (),
    "scaled": ("-f", str(CHART / "ci" / "scaled-values.yaml")),
    "sqlite": ("--set", "mysql.enabled=false", "--set", "analytics.database=sqlite"),
    "existing-secret": ("--set", "mysql.auth.existingSecret=my-db"),
    "no-networkpolicy": ("--set", "networkPolicy.enabled=false"),
    "custom-image": ("--set", "image.repository=registry.example.com/rl/kuberl",
                     "--set-string", "image.tag=sha-0123abc", "--set", "image.pullPolicy=Never"),
}  # fmt: skip


@pytest.fixture(params=[(h, v) for h in HELMS for v in VARIANTS], ids=lambda p: f"helm{p[0]}-{p[1]}")
def rendered(request: pytest.FixtureRequest) -> list[dict]:
    helm, variant = request.param
    return render(helm, *VARIANTS[variant])


# --------------------------------------------------------------------------------------------
# helm lint, helm template, Kubernetes schemas
# --------------------------------------------------------------------------------------------


def test_ci_values_files_exist() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"default-values.yaml", "scaled-values.yaml"} <= names


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_lint_strict(helm: str, values: Path) -> None:
    _helm_or_skip(helm)
    result = tools.helm(helm, "lint", "--strict", str(CHART), "-f", str(values),
                        "--namespace", NAMESPACE)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_a_real_api_server_accepts_every_rendered_object(kube_cluster, values: Path) -> None:
    """Server-side dry run with strict field validation: schemas, defaulting and admission of
    the cluster's Kubernetes, for each values file."""
    kube_cluster.ensure_namespace(NAMESPACE)
    docs = render("4", *values_args(values))
    assert len(docs) > 10
    done = kube_cluster.kubectl("create", "--dry-run=server", "--validate=strict", "-f", "-", namespace=NAMESPACE,
                                input=yaml.safe_dump_all(docs), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(server dry run)") == len(docs)


# The chart's kubeVersion floor (CEL rules with fieldPath came in 1.28): a Kubernetes the test
# cluster does not run.
FLOOR = "1.28.0"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_rendered_objects_validate_at_the_kubernetes_floor(helm: str, values: Path) -> None:
    for doc in render(helm, *values_args(values)):
        tools.validate_k8s(doc, FLOOR)


@pytest.mark.parametrize("variant", ["sqlite", "existing-secret", "no-networkpolicy", "custom-image"])
def test_variants_validate(kube_cluster, variant: str) -> None:
    kube_cluster.ensure_namespace(NAMESPACE)
    docs = render("4", *VARIANTS[variant])
    done = kube_cluster.kubectl("create", "--dry-run=server", "--validate=strict", "-f", "-", namespace=NAMESPACE,
                                input=yaml.safe_dump_all(docs), check=False)
    assert done.returncode == 0, done.stderr
    for doc in docs:
        tools.validate_k8s(doc, FLOOR)


def test_crd_validates_at_the_kubernetes_floor() -> None:
    (crd,) = [d for d in yaml.safe_load_all(CRD_PATH.read_text()) if d]
    tools.validate_k8s(crd, FLOOR)


def test_crd_ships_with_the_chart_not_as_a_template() -> None:
    docs = render("4")
    assert not by_kind(docs, "CustomResourceDefinition")  # crds/ is installed, never templated
    with_crds = render("4", "--include-crds")
    assert [d["metadata"]["name"] for d in by_kind(with_crds, "CustomResourceDefinition")] == [
        "rlexperiments.kuberl.dev"
    ]


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "kuberl"
    assert chart["version"] == "0.1.0" and chart["appVersion"] == "0.1.0"
    assert chart["kubeVersion"] == ">=1.28.0-0"


@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_kube_version_floor(helm: str) -> None:
    render(helm, "--kube-version", "1.28.0")
    err = render_error(helm, "--kube-version", "1.27.0")
    assert "kubeVersion" in err or "incompatible" in err.lower() or ">=1.28.0-0" in err, err


# --------------------------------------------------------------------------------------------
# Pods: hardened, probed on their gRPC ports
# --------------------------------------------------------------------------------------------


def test_every_pod_is_hardened(rendered: list[dict]) -> None:
    pods = pod_specs(rendered)
    assert pods
    for what, _labels, spec in pods:
        context = spec.get("securityContext", {})
        assert context.get("runAsNonRoot") is True, what
        assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", what
        assert spec.get("automountServiceAccountToken") is not None, f"{what}: say it explicitly"
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, f"{what}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, f"{what}/{c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{what}/{c['name']}"
            assert "resources" in c and c["resources"].get("requests"), f"{what}/{c['name']}"
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{what}/{c['name']}: a writable /tmp"


def test_only_the_operator_and_the_experiment_api_get_a_token(rendered: list[dict]) -> None:
    tokens = {what for what, _l, spec in pod_specs(rendered) if spec["automountServiceAccountToken"]}
    assert tokens == {f"Deployment/{FULLNAME}-operator", f"Deployment/{FULLNAME}-experiment"}


def test_grpc_roles_are_probed_on_their_ports(rendered: list[dict]) -> None:
    for component, port in GRPC_PORTS.items():
        c = container(rendered, "Deployment", f"{FULLNAME}-{component}")
        assert c["ports"] == [{"name": "grpc", "containerPort": port, "protocol": "TCP"},
                              {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}], component
        assert env_of(c)["KUBERL_METRICS_PORT"] == str(METRICS_PORT)
        for probe in ("readinessProbe", "livenessProbe"):  # the plaintext health-only port
            assert c[probe]["grpc"] == {"port": 8081}, f"{component} {probe}"
        args = c["args"]
        assert args[:2] == ["serve", component] and args[args.index("--port") + 1] == str(port)
        assert args[args.index("--health-port") + 1] == "8081" and "--tls-dir" in args and "--insecure" not in args


def test_every_workload_container_has_both_probes(rendered: list[dict]) -> None:
    for what, _labels, spec in pod_specs(rendered):
        if what.startswith("Pod/"):
            continue  # the helm test pod runs once
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, f"{what}/{c['name']}"


def test_operator_runs_kopf_standalone_with_liveness(rendered: list[dict]) -> None:
    c = container(rendered, "Deployment", f"{FULLNAME}-operator")
    assert c["command"][:5] == ["kopf", "run", "-m", "kuberl_operator.handlers", "--all-namespaces"]
    assert "--standalone" in c["command"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["command"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    operator = one(rendered, "Deployment", f"{FULLNAME}-operator")
    # --standalone: no peering, so never two operators at once.
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}


def test_experiment_api_is_in_cluster_mode(rendered: list[dict]) -> None:
    c = container(rendered, "Deployment", f"{FULLNAME}-experiment")
    args = c["args"]
    assert args[args.index("--kubernetes-namespace") + 1] == NAMESPACE
    # The dashboard on the pod's loopback (no --dashboard-host): port-forward only; its curves from analytics.
    assert args[args.index("--dashboard-port") + 1] == "8090" and "--dashboard-host" not in args
    assert args[args.index("--analytics") + 1] == f"{FULLNAME}-analytics.{NAMESPACE}.svc.cluster.local:50052"
    spec = one(rendered, "Deployment", f"{FULLNAME}-experiment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-experiment"


def test_services_select_their_pods_by_port_name(rendered: list[dict]) -> None:
    workloads = [d for d in rendered if d["kind"] in WORKLOADS]
    for service in by_kind(rendered, "Service"):
        selector = service["spec"]["selector"]
        assert set(selector) == SELECTOR_KEYS, service["metadata"]["name"]
        matches = [w for w in workloads
                   if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)}"
        ports = {p["name"] for c in matches[0]["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}  # fmt: skip
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]
    for component, port in GRPC_PORTS.items():
        service = one(rendered, "Service", f"{FULLNAME}-{component}")
        assert service["spec"]["type"] == "ClusterIP"
        assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("grpc", port), ("metrics", METRICS_PORT)]


def test_helm_test_pod_asks_the_experiment_api(rendered: list[dict]) -> None:
    (pod,) = by_kind(rendered, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (c,) = pod["spec"]["containers"]
    assert c["args"][:3] == ["status", "--address", f"{FULLNAME}-experiment:50053"]


# --------------------------------------------------------------------------------------------
# The operator's settings: the chart's own image, FQDN peers
# --------------------------------------------------------------------------------------------


def test_operator_image_is_the_charts_image(rendered: list[dict]) -> None:
    env = env_of(container(rendered, "Deployment", f"{FULLNAME}-operator"))
    images = set()
    pull_policies = set()
    for what, labels, spec in pod_specs(rendered):
        if labels["app.kubernetes.io/component"] == "mysql":
            continue
        for c in spec["containers"]:
            images.add(c["image"])
            pull_policies.add(c["imagePullPolicy"])
    assert images == {env["KUBERL_IMAGE"]}
    assert pull_policies == {env["KUBERL_IMAGE_PULL_POLICY"]}
    assert env["KUBERL_POLICY_ADDRESS"] == f"{FULLNAME}-policy.{NAMESPACE}.svc.cluster.local:50056"
    assert env["KUBERL_ANALYTICS_ADDRESS"] == (
        f"{FULLNAME}-analytics.{NAMESPACE}.svc.cluster.local:50052"
    )
    assert env["KUBERL_PART_OF"] == "kuberl"


@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_image_values_reach_the_operator(helm: str) -> None:
    default = env_of(container(render(helm), "Deployment", f"{FULLNAME}-operator"))
    assert default["KUBERL_IMAGE"] == "kuberl:0.1.0"  # tag "" means the appVersion
    assert default["KUBERL_IMAGE_PULL_POLICY"] == "IfNotPresent"
    custom = env_of(container(render(helm, *VARIANTS["custom-image"]), "Deployment",
                              f"{FULLNAME}-operator"))  # fmt: skip
    assert custom["KUBERL_IMAGE"] == "registry.example.com/rl/kuberl:sha-0123abc"
    assert custom["KUBERL_IMAGE_PULL_POLICY"] == "Never"


def test_other_release_names_and_namespaces() -> None:
    docs = render("4", "--set", "fullnameOverride=rl", "--set", "clusterDomain=corp.internal")
    env = env_of(container(docs, "Deployment", "rl-operator"))
    assert env["KUBERL_POLICY_ADDRESS"] == f"rl-policy.{NAMESPACE}.svc.corp.internal:50056"
    code, out, err = _render_release("lab", "team-a")
    assert code == 0, err
    docs = [d for d in yaml.safe_load_all(out) if d]
    env = env_of(container(docs, "Deployment", "lab-kuberl-operator"))
    assert env["KUBERL_ANALYTICS_ADDRESS"] == "lab-kuberl-analytics.team-a.svc.cluster.local:50052"
    assert {d["metadata"].get("namespace", "team-a") for d in docs} == {"team-a"}


def _render_release(release: str, namespace: str) -> tuple[int, str, str]:
    _helm_or_skip("4")
    result = tools.helm("4", "template", release, str(CHART), "--namespace", namespace)
    return result.returncode, result.stdout, result.stderr


# --------------------------------------------------------------------------------------------
# The database password
# --------------------------------------------------------------------------------------------


def _passwords(secret: dict) -> list[str]:
    assert "stringData" not in secret
    return [base64.b64decode(v).decode() for v in secret["data"].values()]


@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_database_password_only_in_its_secret(helm: str) -> None:
    docs = render(helm)
    secret = one(docs, "Secret", f"{FULLNAME}-mysql")
    assert set(secret["data"]) == {"mariadb-password", "mariadb-root-password"}
    passwords = _passwords(secret)
    assert all(len(p) >= 32 for p in passwords) and len(set(passwords)) == 2
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    others = yaml.safe_dump_all([d for d in docs if d is not secret])
    for password in passwords:
        assert password not in others
        assert base64.b64encode(password.encode()).decode() not in others
    for what, _labels, spec in pod_specs(docs):
        for c in spec["containers"]:
            for name, value in env_of(c).items():
                if "PASSWORD" in name:
                    assert name.endswith("_FILE"), f"{what}: {name} must name a file"
                    assert isinstance(value, str) and value.startswith("/etc/"), f"{what}: {name}"


def test_analytics_reads_the_password_from_the_mounted_secret(rendered: list[dict]) -> None:
    deployment = one(rendered, "Deployment", f"{FULLNAME}-analytics")
    spec = deployment["spec"]["template"]["spec"]
    env = env_of(spec["containers"][0])
    url = env["KUBERL_DATABASE_URL"]
    assert not re.match(r"^mysql://[^/@]*:[^/@]*@", url), "a password in the URL"
    if url.startswith("sqlite:"):
        assert url == "sqlite:////var/lib/kuberl/analytics.db"
        assert "KUBERL_DATABASE_PASSWORD_FILE" not in env
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["data"] == "/var/lib/kuberl"
        assert {"name": "data", "emptyDir": {}} in spec["volumes"]
        return
    path = Path(env["KUBERL_DATABASE_PASSWORD_FILE"])
    (volume,) = [v for v in spec["volumes"] if "secret" in v and v["name"] != "tls"]  # tls: its identity
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == str(path.parent) and mount.get("readOnly") is True
    (item,) = volume["secret"]["items"]
    assert item["path"] == path.name
    mysql = [d for d in rendered if d["kind"] == "StatefulSet"]
    if mysql:
        assert url == f"mysql://kuberl@{FULLNAME}-mysql:3306/rl_analytics?tls=off"
        assert item["key"] == "mariadb-password"
        db_volumes = mysql[0]["spec"]["template"]["spec"]["volumes"]
        (db_secret,) = [v["secret"]["secretName"] for v in db_volumes if "secret" in v]
        assert volume["secret"]["secretName"] == db_secret
    else:
        assert url == "mysql://kuberl@mariadb.databases.svc.cluster.local:3306/rl_analytics"
        assert volume["secret"]["secretName"] == "kuberl-external-db"
        assert item["key"] == "password"


def database_secrets(docs: list[dict]) -> list[dict]:
    """Secrets apart from the certificates' (kubernetes.io/tls: templates/tls.yaml)."""
    return [d for d in by_kind(docs, "Secret") if d.get("type") != "kubernetes.io/tls"]


def test_existing_secret_means_no_generated_secret() -> None:
    docs = render("4", *VARIANTS["existing-secret"])
    assert not database_secrets(docs)
    volumes = one(docs, "StatefulSet", f"{FULLNAME}-mysql")["spec"]["template"]["spec"]["volumes"]
    assert [v["secret"]["secretName"] for v in volumes if "secret" in v] == ["my-db"]


@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_without_mysql_there_is_no_statefulset(helm: str) -> None:
    for variant in ("scaled", "sqlite"):
        docs = render(helm, *VARIANTS[variant])
        assert not by_kind(docs, "StatefulSet"), variant
        assert not database_secrets(docs), variant
        names = {d["metadata"]["name"] for d in docs}
        assert not {n for n in names if "mysql" in n}, variant
    docs = render(helm)
    statefulset = one(docs, "StatefulSet", f"{FULLNAME}-mysql")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == "mariadb:11.4"
    assert statefulset["spec"]["serviceName"] == f"{FULLNAME}-mysql-headless"
    assert one(docs, "Service", f"{FULLNAME}-mysql-headless")["spec"]["clusterIP"] == "None"


def test_mysql_persistence_values() -> None:
    docs = render("4", "--set", "mysql.persistence.size=50Gi",
                  "--set", "mysql.persistence.storageClass=fast-ssd")  # fmt: skip
    (claim,) = one(docs, "StatefulSet", f"{FULLNAME}-mysql")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"


@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_the_result_retention_reaches_the_policy_role_and_analytics(helm: str) -> None:
    """One value, both roles that keep what a deleted experiment leaves (its result, its metrics)."""
    def retention(docs: list[dict], role: str) -> str:
        args = container(docs, "Deployment", f"{FULLNAME}-{role}")["args"]
        return args[args.index("--result-retention-seconds") + 1]

    defaults = render(helm)
    assert retention(defaults, "policy") == retention(defaults, "analytics") == str(7 * 24 * 3600)
    changed = render(helm, "--set", "resultRetentionSeconds=0")
    assert retention(changed, "policy") == retention(changed, "analytics") == "0"
    assert "resultRetentionSeconds" in render_error(helm, "--set", "resultRetentionSeconds=-5")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "mysql.enabled=false"), "needs externalDatabase.url"),
        (("--set", "analytics.database=sqlite"), "analytics.database=sqlite needs mysql.enabled=false"),
        (("--set", "externalDatabase.url=mysql://u@db:3306/x"), "set mysql.enabled=false"),
    ],
    ids=["no-database", "sqlite-with-mysql", "external-with-mysql"],
)
def test_database_choices_that_make_no_sense_fail(args: tuple[str, ...], message: str) -> None:
    for helm in HELMS:
        assert message in render_error(helm, *args)


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def test_every_object_has_the_standard_labels(rendered: list[dict]) -> None:
    for doc in rendered:
        labels = doc["metadata"].get("labels", {})
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{what} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "kuberl", what
        assert labels["app.kubernetes.io/name"] == "kuberl", what
        assert labels["app.kubernetes.io/instance"] == RELEASE, what
        assert labels["app.kubernetes.io/managed-by"] == "Helm", what
        assert labels["helm.sh/chart"] == "kuberl-0.1.0", what


def test_selectors_are_name_instance_component(rendered: list[dict]) -> None:
    for doc in rendered:
        if doc["kind"] not in WORKLOADS:
            continue
        selector = doc["spec"]["selector"]["matchLabels"]
        template_labels = doc["spec"]["template"]["metadata"]["labels"]
        assert set(selector) == SELECTOR_KEYS, doc["metadata"]["name"]
        assert selector.items() <= template_labels.items()
        assert template_labels["app.kubernetes.io/component"] == doc["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        for key in STANDARD_LABELS:
            assert key in template_labels, f"{doc['metadata']['name']} pods lack {key}"


# --------------------------------------------------------------------------------------------
# RBAC
# --------------------------------------------------------------------------------------------


def _rules(role: dict) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(group, resource, tuple(sorted(rule["verbs"])))
            for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"]}  # fmt: skip


def test_rbac_has_no_wildcards(rendered: list[dict]) -> None:
    roles = by_kind(rendered, "ClusterRole") + by_kind(rendered, "Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(key, []), f"{role['metadata']['name']}: {key}"
            assert "nonResourceURLs" not in rule and "resourceNames" not in rule


def test_operator_rbac_framework_apart_from_application(rendered: list[dict]) -> None:
    framework = one(rendered, "ClusterRole", f"{FULLNAME}-operator-kopf")
    application = one(rendered, "ClusterRole", f"{FULLNAME}-operator")
    assert _rules(framework) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),
        ("", "namespaces", ("list", "watch")),
        ("", "events", ("create",)),
    }  # no kopf.dev peering: the operator runs --standalone
    assert _rules(application) == {
        ("kuberl.dev", "rlexperiments", ("delete", "get", "list", "patch", "watch")),
        ("kuberl.dev", "rlexperiments/status", ("get", "patch")),
        ("", "configmaps", ("create", "delete", "get", "list", "patch", "watch")),
        ("", "services", ("create", "delete", "get", "list", "patch", "watch")),
        ("apps", "deployments", ("create", "delete", "get", "list", "patch", "watch")),
        ("apps", "statefulsets", ("create", "delete", "get", "list", "patch", "watch")),
        ("networking.k8s.io", "networkpolicies", ("create", "delete", "get", "list", "patch", "watch")),
        ("", "secrets", ("create", "get", "list", "patch", "watch")),
        ("", "pods", ("get", "list", "watch")),
    }
    for name in (f"{FULLNAME}-operator-kopf", f"{FULLNAME}-operator"):
        binding = one(rendered, "ClusterRoleBinding", name)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "ClusterRole", "name": name}  # fmt: skip
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-operator",
                                        "namespace": NAMESPACE}]  # fmt: skip
    spec = one(rendered, "Deployment", f"{FULLNAME}-operator")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{FULLNAME}-operator"


def test_experiment_api_rbac_is_namespaced(rendered: list[dict]) -> None:
    role = one(rendered, "Role", f"{FULLNAME}-experiment")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules(role) == {
        ("kuberl.dev", "rlexperiments", ("create", "get", "list", "patch", "watch")),
        ("kuberl.dev", "rlexperiments/status", ("get",)),
    }
    binding = one(rendered, "RoleBinding", f"{FULLNAME}-experiment")
    assert binding["roleRef"]["kind"] == "Role" and binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-experiment",
                                    "namespace": NAMESPACE}]  # fmt: skip
    assert len(by_kind(rendered, "ClusterRoleBinding")) == 2  # the operator's two, nothing else


def test_operator_rbac_covers_what_its_code_calls() -> None:
    """The kinds the operator's builders create are exactly the ones it may create."""
    from kuberl.lifecycle import Phase
    from kuberl_operator.builders import Experiment, Settings, desired_children

    application = one(render("4"), "ClusterRole", f"{FULLNAME}-operator")
    allowed = {(g, r) for g, r, verbs in _rules(application) if {"create", "patch", "get"} <= set(verbs)}
    exp = Experiment.from_body("cartpole", NAMESPACE, {})
    plural = {"NetworkPolicy": "networkpolicies"}
    kinds = {(c["apiVersion"].rpartition("/")[0], plural.get(c["kind"], c["kind"].lower() + "s"))
             for c in desired_children(exp, Settings(network_policies=True), Phase.RUNNING)}  # fmt: skip
    kinds.add(("", "secrets"))  # each role's certificate (handlers._ensure_certificates)
    assert kinds == allowed


# --------------------------------------------------------------------------------------------
# NetworkPolicies
# --------------------------------------------------------------------------------------------


def _selects(selector: dict, labels: dict) -> bool:
    if not (selector.get("matchLabels", {}).items() <= labels.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
    return True


def _allowed(policies: list[dict], target: tuple[str, dict], port: int, peer: tuple[str, dict]) -> bool:
    """Whether a pod (namespace, labels) may reach `port` on the target pod (namespace, labels),
    as Kubernetes evaluates ingress policies: a pod no policy selects takes anything; a selected
    one only what some rule admits. Namespaces carry their kubernetes.io/metadata.name label."""
    namespace, labels = target
    peer_namespace, peer_labels = peer
    selecting = [p for p in policies if p["metadata"].get("namespace", NAMESPACE) == namespace
                 and _selects(p["spec"]["podSelector"], labels)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            if port not in {p["port"] for p in rule.get("ports", [])}:
                continue
            if not rule.get("from"):  # no `from`: every source
                return True
            for entry in rule["from"]:
                if "ipBlock" in entry:
                    continue
                if "namespaceSelector" in entry:
                    if not _selects(entry["namespaceSelector"], {"kubernetes.io/metadata.name": peer_namespace}):
                        continue
                elif peer_namespace != namespace:
                    continue
                if _selects(entry.get("podSelector", {}), peer_labels):
                    return True
    return False


def test_network_policies_select_kuberl_pods(rendered: list[dict]) -> None:
    policies = by_kind(rendered, "NetworkPolicy")
    for policy in policies:
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/part-of"] == "kuberl"
        assert spec["policyTypes"] == ["Ingress"]
        for rule in spec.get("ingress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: every port open"
            if rule["ports"] != [{"port": METRICS_PORT, "protocol": "TCP"}]:  # read-only figures: anyone
                assert rule.get("from"), f"{policy['metadata']['name']}: from anywhere"
    for _what, labels, _spec in pod_specs(rendered):
        if labels["app.kubernetes.io/component"] == "test":
            continue
        if policies:
            assert any(_selects(p["spec"]["podSelector"], labels) for p in policies), labels


@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_network_policies_allow_exactly_the_kuberl_paths(helm: str) -> None:
    docs = render(helm)
    policies = by_kind(docs, "NetworkPolicy")
    pods = {labels["app.kubernetes.io/component"]: (NAMESPACE, labels) for _w, labels, _s in pod_specs(docs)}
    stranger = (NAMESPACE, {"app": "curl"})

    def kuberl(component: str, namespace: str = "team-a") -> tuple[str, dict]:
        return namespace, {"app.kubernetes.io/part-of": "kuberl", "app.kubernetes.io/component": component}

    # policy: from any experiment's actors and learner, the operator and the test pod; no one else
    for caller in (kuberl("environment"), kuberl("learner"), pods["operator"], pods["test"]):
        assert _allowed(policies, pods["policy"], 50056, caller), caller
    for caller in (kuberl("buffer"), kuberl("operator"), kuberl("x"), pods["analytics"], stranger):
        assert not _allowed(policies, pods["policy"], 50056, caller), caller
    # analytics: every kuberl pod reports; a stranger does not
    assert _allowed(policies, pods["analytics"], 50052, kuberl("buffer"))
    assert not _allowed(policies, pods["analytics"], 50052, stranger)
    # the experiment API: the test pod and the namespace's pods (the default experimentApiFrom)
    assert _allowed(policies, pods["experiment"], 50053, pods["test"])
    assert _allowed(policies, pods["experiment"], 50053, stranger)
    assert not _allowed(policies, pods["experiment"], 50053, kuberl("environment"))
    for component, port in GRPC_PORTS.items():
        assert not _allowed(policies, pods[component], port + 1000, pods["test"]), component
    # MariaDB from analytics only
    assert _allowed(policies, pods["mysql"], 3306, pods["analytics"])
    for other in ("policy", "experiment", "operator", "test"):
        assert not _allowed(policies, pods["mysql"], 3306, pods[other]), other
    # the operator serves nobody but scrapers (its liveness probe is node traffic)
    operator_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-operator")
    assert operator_policy["spec"]["ingress"] == [{"ports": [{"port": METRICS_PORT, "protocol": "TCP"}]}]
    # /metrics: read-only, so any scraper, on every kuberl pod (MariaDB serves none)
    for component in (*GRPC_PORTS, "operator"):
        assert _allowed(policies, pods[component], METRICS_PORT, stranger), component
    assert not _allowed(policies, pods["mysql"], METRICS_PORT, stranger)


def test_each_experiment_admits_its_own_pods_and_the_operator_only() -> None:
    """Children built by the operator's own builders, with the settings the chart gives it, in
    two experiments' namespaces: who may reach whom."""
    from kuberl.lifecycle import Phase
    from kuberl_operator.builders import Experiment, Settings, desired_children

    docs = render("4")
    env = env_of(container(docs, "Deployment", f"{FULLNAME}-operator"))
    settings = Settings.from_environ({k: v for k, v in env.items() if isinstance(v, str)})
    assert settings.image == env["KUBERL_IMAGE"] and settings.network_policies
    assert settings.operator_namespace == NAMESPACE
    children, pods = [], {}
    for name, namespace in ((RELEASE, NAMESPACE), ("other", "team-b")):  # one named like the release
        built = desired_children(Experiment.from_body(name, namespace, {}), settings, Phase.RUNNING)
        children += built
        for child in built:
            if child["kind"] in WORKLOADS:
                (c,) = child["spec"]["template"]["spec"]["containers"]
                assert c["image"] == env["KUBERL_IMAGE"]
                role = child["metadata"]["labels"]["app.kubernetes.io/component"]
                assert c["ports"][0]["containerPort"] == CHILD_PORTS[role]
                assert c["ports"][1] == {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
                assert c["args"][c["args"].index("--metrics-port") + 1] == str(METRICS_PORT)
                pods[(name, role)] = (namespace, child["spec"]["template"]["metadata"]["labels"])
            if child["kind"] == "Service":  # what the ServiceMonitor scrapes
                assert [p["name"] for p in child["spec"]["ports"]] == ["grpc", "metrics"]
    policies = by_kind(docs, "NetworkPolicy") + by_kind(children, "NetworkPolicy")
    operator = (NAMESPACE, one(docs, "Deployment", f"{FULLNAME}-operator")["spec"]["template"]["metadata"]["labels"])
    for name in (RELEASE, "other"):
        shard, learner, actor = (pods[(name, r)] for r in ("buffer", "learner", "environment"))
        other = "other" if name == RELEASE else RELEASE
        assert _allowed(policies, shard, 50051, actor) and _allowed(policies, shard, 50051, learner)
        assert _allowed(policies, shard, 50051, operator) and _allowed(policies, learner, 50054, operator)
        # another experiment's pods, a pod that calls itself kuberl, a stranger: nothing
        for intruder in (pods[(other, "environment")], pods[(other, "learner")],
                         (shard[0], {"app.kubernetes.io/part-of": "kuberl", "app.kubernetes.io/component": "learner"}),
                         (shard[0], {"app": "curl"})):
            for target, port in ((shard, 50051), (learner, 50054), (actor, 50050)):
                assert not _allowed(policies, target, port, intruder), (name, target, intruder)
        assert not _allowed(policies, learner, 50054, actor), "an actor does not drive its learner"
        for target in (shard, learner, actor):  # read-only figures, for any scraper
            assert _allowed(policies, target, METRICS_PORT, (shard[0], {"app": "curl"}))
        # a child reaches policy and analytics
        for component in ("policy", "analytics"):
            target = (NAMESPACE, one(docs, "Deployment", f"{FULLNAME}-{component}")["spec"]["template"]["metadata"][
                "labels"])  # fmt: skip
            assert _allowed(policies, target, GRPC_PORTS[component], learner)
        # and no chart Deployment selects a child's pods, even with the release's name
        for workload in (d for d in docs if d["kind"] in WORKLOADS):
            assert not _selects(workload["spec"]["selector"], learner[1]), workload["metadata"]["name"]


def test_metrics_are_scraped_and_shown_where_the_cluster_can() -> None:
    """A ServiceMonitor only where the Prometheus operator's CRD is served (and the value says
    so); the Grafana dashboard as a labelled ConfigMap; all of it off with metrics.enabled=false."""
    monitor_api = ("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    assert not by_kind(render("4"), "ServiceMonitor")
    assert not by_kind(render("4", *monitor_api, "--set", "metrics.serviceMonitor.enabled=false"), "ServiceMonitor")
    docs = render("4", *monitor_api, "--set", "metrics.serviceMonitor.labels.release=prometheus")
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}  # experiments live in any namespace
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/part-of": "kuberl"}}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    scraped = [svc for svc in by_kind(docs, "Service") if any(p["name"] == "metrics" for p in svc["spec"]["ports"])]
    assert {svc["metadata"]["name"] for svc in scraped} >= {f"{FULLNAME}-{c}" for c in (*GRPC_PORTS, "operator-metrics")}
    dashboard = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["kuberl.json"])
    assert shipped == json.loads((CHART / "dashboards" / "kuberl.json").read_text())
    assert all(t["expr"] for panel in shipped["panels"] for t in panel["targets"])

    off = render("4", *monitor_api, "--set", "metrics.enabled=false")
    assert not by_kind(off, "ServiceMonitor") and not [d for d in off if d["metadata"]["name"].endswith("dashboard")]
    assert "KUBERL_METRICS_PORT" not in env_of(container(off, "Deployment", f"{FULLNAME}-operator"))
    assert all(p["name"] != "metrics" for svc in by_kind(off, "Service") for p in svc["spec"]["ports"])


def test_network_policy_values() -> None:
    assert not by_kind(render("4", *VARIANTS["no-networkpolicy"]), "NetworkPolicy")
    operator_env = env_of(container(render("4", *VARIANTS["no-networkpolicy"]), "Deployment",
                                    f"{FULLNAME}-operator"))
    assert operator_env["KUBERL_NETWORK_POLICIES"] == "0"  # nor per experiment
    docs = render("4", "--set-json", 'networkPolicy.experimentApiFrom=[]')
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-experiment")
    rule, _metrics = policy["spec"]["ingress"]
    assert len(rule["from"]) == 1  # the test pod only
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    docs = render("4", "--set-json", f"networkPolicy.metricsFrom=[{json.dumps(scraper)}]")
    for policy in by_kind(docs, "NetworkPolicy"):
        if policy["metadata"]["name"] != f"{FULLNAME}-mysql":
            assert policy["spec"]["ingress"][-1] == {"ports": [{"port": METRICS_PORT, "protocol": "TCP"}],
                                                     "from": [scraper]}, policy["metadata"]["name"]
    docs = render("4", *VARIANTS["scaled"])
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-policy")
    actors_and_learners, _operator_and_test = policy["spec"]["ingress"][0]["from"]
    assert actors_and_learners["namespaceSelector"] == {"matchLabels": {"kuberl.dev/experiments": "true"}}


# --------------------------------------------------------------------------------------------
# values.yaml and values.schema.json
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("--set", "foo=1"), "foo"),
        (("--set", "mysql.bogus=1"), "bogus"),
        (("--set", "networkPolicy.experimentApiFrom[0].podSelctor.x=y"), "podSelctor"),
        (("--set", "mysql.enabled=maybe"), "enabled"),
        (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
        (("--set", "analytics.database=postgres"), "database"),
        (("--set", "operator.resources.requests.cpu=lots"), "cpu"),
        (("--set", "podSecurityContext.runAsUser=-1"), "runAsUser"),
        (("--set", "mysql.auth.password=hunter2"), "password"),
        (("--set", "externalDatabase.url=mysql://u:hunter2@db:3306/x"), "url"),
        (("--set", "operator.observationIntervalSeconds=0"), "observationIntervalSeconds"),
    ],
    ids=["unknown-top-level", "unknown-nested", "unknown-in-list", "wrong-type-bool", "enum",
         "enum-database", "quantity", "minimum", "no-password-value", "password-in-url", "observation-interval"],
)
@pytest.mark.parametrize("helm", HELMS, ids=lambda h: f"helm{h}")
def test_schema_refuses(helm: str, args: tuple[str, ...], key: str) -> None:
    err = render_error(helm, *args)
    assert "schema" in err.lower(), err
    assert key in err, err


@pytest.mark.parametrize(
    "args",
    [
        ("--set", "global.imageRegistry=r.example.com"),  # as a subchart: Helm's `global`
        ("--set", "nodeSelector.node\\.example\\.com/pool=rl"),
        ("--set", "policy.resources.limits.nvidia\\.com/gpu=1"),
        ("--set-json", 'tolerations=[{"operator":"Exists","effect":"NoSchedule"}]'),
        ("--set-json", 'networkPolicy.experimentApiFrom=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]'),
    ],
    ids=["global", "nodeSelector", "extended-resource", "tolerations", "ipBlock"],
)
def test_schema_accepts(args: tuple[str, ...]) -> None:
    for helm in HELMS:
        for doc in render(helm, *args):
            tools.validate_k8s(doc, tools.latest_k8s_version())


def _schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


LOOSE_OBJECTS = {  # free-form on purpose: Helm's `global`, Kubernetes affinity terms and tolerations
    "properties.global",
    "properties.affinity.properties.nodeAffinity",
    "properties.affinity.properties.podAffinity",
    "properties.affinity.properties.podAntiAffinity",
    "properties.experiments.properties.placement.properties.affinity",
    "properties.experiments.properties.placement.properties.tolerations.items",
}


def test_schema_is_strict_at_every_level() -> None:
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    loose: set[str] = set()

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                extra = node.get("additionalProperties")
                if "properties" in node:
                    assert extra is False, f"{path}: additionalProperties must be false"
                elif not isinstance(extra, dict):  # a map: its values must have a schema
                    loose.add(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(schema, "")
    assert loose == LOOSE_OBJECTS


def test_values_yaml_matches_the_schema() -> None:
    import jsonschema

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(_schema())
    jsonschema.Draft7Validator(_schema()).validate(values)
    for path in CI_VALUES:
        merged = _merge(values, yaml.safe_load(path.read_text()) or {})
        jsonschema.Draft7Validator(_schema()).validate(merged)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base[k], v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


def test_every_value_has_a_comment() -> None:
    """Every value has a `# -- ` comment (above it, possibly over several lines, or on its
    line); one on a mapping documents the mapping as one value (podSecurityContext). A plain
    `# ` comment heads a section: every key under it still needs its own."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    root: dict = {"key": "<root>", "doc": False, "children": []}
    stack: list[tuple[int, dict]] = []
    block: list[str] = []  # the comment lines right above the current line
    count = 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z0-9_.-]+):(.*)$", line)
        if match:
            indent = len(match.group(1))
            node = {"key": match.group(2), "children": [],
                    "doc": any(c.startswith("# --") for c in block) or " # " in match.group(3)}
            while stack and stack[-1][0] >= indent:
                stack.pop()
            (stack[-1][1] if stack else root)["children"].append(node)
            stack.append((indent, node))
            count += 1
        block = []

    undocumented: list[str] = []

    def check(node: dict, path: str) -> None:
        if node["doc"]:
            return
        if not node["children"]:
            undocumented.append(path)
        for child in node["children"]:
            check(child, f"{path}.{child['key']}")

    for top in root["children"]:
        check(top, top["key"])
    assert count > 40
    assert not undocumented, f"values without a comment: {undocumented}"


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_notes_give_the_quick_start(values: Path) -> None:
    """NOTES.txt as `helm install` prints it (Helm 4 renders it without a cluster)."""
    _helm_or_skip("4")
    result = tools.helm("4", "install", RELEASE, str(CHART), "--dry-run=client",
                        "--namespace", NAMESPACE, "-f", str(values))  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout[result.stdout.index("NOTES:"):]
    for command in (f"kubectl apply --namespace {NAMESPACE} -f examples/cartpole.yaml",
                    f"kubectl get rlx --namespace {NAMESPACE}",
                    f"kubectl scale rlx cartpole --namespace {NAMESPACE} --replicas=3",
                    f"helm test {RELEASE}", f"svc/{FULLNAME}-experiment 50053:50053",
                    f"kuberl export {NAMESPACE}/cartpole --policy localhost:50056"):  # fmt: skip
        assert command in notes, command
    assert "hunter2" not in notes and ":3306/rl_analytics" in notes


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------

def _secret_files(docs: list[dict], name: str, directory: Path) -> Path:
    from tests.kube import write_secret_files

    return write_secret_files(one(docs, "Secret", name)["data"], directory)


def test_the_charts_certificates_and_the_operators_interoperate_over_mutual_tls(tmp_path: Path) -> None:
    """The chart's CA (Helm's genCA, RSA) and role certificates (genSignedCert, identity by DNS
    name), and a certificate the operator issues with that CA for one experiment's actor: a real
    policy process serves them, as in a cluster."""
    import subprocess
    import sys

    import grpc

    from kuberl import rpc
    from kuberl.local import free_port
    from kuberl.pki import load_authority
    from kuberl.security import Identity, TlsFiles, identity_pem
    from kuberl.v1 import policy_service_pb2 as pb
    from kuberl.v1 import policy_service_pb2_grpc as pb_grpc
    from tests.waiting import wait_for

    docs = render("4")
    ca = _secret_files(docs, f"{FULLNAME}-ca", tmp_path / "ca")
    policy = _secret_files(docs, f"{FULLNAME}-policy-tls", tmp_path / "policy")
    reader = TlsFiles(_secret_files(docs, f"{FULLNAME}-reader-tls", tmp_path / "reader"))
    assert TlsFiles(policy).identity() == Identity("policy") and reader.identity() == Identity("reader")
    actor = tmp_path / "actor"
    actor.mkdir()
    for key, value in identity_pem(load_authority(ca / "tls.crt", ca / "tls.key"),
                                   Identity("environment", "team/cartpole#0123abcd")).items():
        (actor / key).write_bytes(value)

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "kuberl.cli", "serve", "policy", "--port", str(port),
                                "--tls-dir", str(policy), "--data-dir", str(tmp_path / "data")])
    try:
        def latest(identity: Path | TlsFiles, experiment: str) -> grpc.StatusCode | int:
            files = identity if isinstance(identity, TlsFiles) else TlsFiles(identity)
            with rpc.channel(f"127.0.0.1:{port}", "policy", files) as channel:
                try:
                    return pb_grpc.PolicyServiceStub(channel).GetPolicy(
                        pb.GetPolicyRequest(experiment_id=experiment, newer_than_version=-1), timeout=5).latest_version
                except grpc.RpcError as err:
                    return err.code()

        assert wait_for(lambda: latest(reader, "team/cartpole#0123abcd") == -1, 30, "the policy role over TLS")
        assert latest(actor, "team/cartpole#0123abcd") == -1  # its own experiment's weights (none yet)
        assert latest(actor, "team/other#0123abcd") == grpc.StatusCode.PERMISSION_DENIED
    finally:
        process.terminate()
        process.wait(timeout=30)
