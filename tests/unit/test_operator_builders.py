"""The operator's desired children, built without any API server."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from kuberl.config import ConfigError, load_manifest
from kuberl.lifecycle import Phase
from kuberl_operator.builders import (CONFIG_HASH_ANNOTATION, DEFAULT_RESOURCES, ChildPlan, Experiment, Settings,
                                      build_workload, config_hash, desired_children,
                                      manifest_text, plan_children)

SETTINGS = Settings(image="registry.example/kuberl:1.2.3", policy_address="kuberl-policy.ops.svc:50056",
                    analytics_address="kuberl-analytics.ops.svc:50052")


def experiment(spec=None, name="cartpole", namespace="research") -> Experiment:
    return Experiment.from_body(name, namespace, spec or {})


def by_name(children):
    return {f"{c['kind']}/{c['metadata']['name']}": c for c in children}


def test_children_are_a_configmap_two_deployments_a_statefulset_and_three_headless_services():
    children = by_name(desired_children(experiment({"environment": {"replicas": 3}, "buffer": {"replicas": 2}}),
                                        SETTINGS, Phase.RUNNING))
    assert sorted(children) == ["ConfigMap/cartpole-config", "Deployment/cartpole-environment",
                                "Deployment/cartpole-learner", "Service/cartpole-buffer", "Service/cartpole-environment",
                                "Service/cartpole-learner", "StatefulSet/cartpole-buffer"]
    assert children["Deployment/cartpole-environment"]["spec"]["replicas"] == 3
    assert children["StatefulSet/cartpole-buffer"]["spec"]["replicas"] == 2
    assert children["Deployment/cartpole-learner"]["spec"]["replicas"] == 1
    for role, port in (("environment", 50050), ("buffer", 50051), ("learner", 50054)):
        service = children[f"Service/cartpole-{role}"]
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["ports"][0]["port"] == port
        deployment = children[f"{'StatefulSet' if role == 'buffer' else 'Deployment'}/cartpole-{role}"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
        assert all(c["metadata"]["namespace"] == "research" for c in children.values())


def test_pods_run_the_role_non_root_with_the_configured_image_and_peers():
    deployment = build_workload(experiment(), "buffer", SETTINGS, Phase.RUNNING)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/kuberl:1.2.3"
    args = container["args"]
    assert args[:2] == ["serve", "buffer"]
    assert args[args.index("--buffer") + 1] == "cartpole-buffer.research.svc.cluster.local:50051"
    assert args[args.index("--policy") + 1] == SETTINGS.policy_address
    assert args[args.index("--experiment") + 1] == "/etc/kuberl/experiment.yaml"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["grpc"] == {"port": 8081}  # the health-only plaintext port
    assert args[args.index("--health-port") + 1] == "8081" and "--insecure" in args  # no CA: plaintext
    assert {"name": "config", "configMap": {"name": "cartpole-config"}} in pod["volumes"]


def test_with_the_charts_ca_each_role_mounts_its_own_certificate():
    settings = Settings.from_environ({"KUBERL_CA_DIR": "/etc/kuberl/ca"})
    for role in ("environment", "buffer", "learner"):
        pod = build_workload(experiment(), role, settings, Phase.RUNNING)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        args = container["args"]
        assert "--insecure" not in args and args[args.index("--tls-dir") + 1] == "/etc/kuberl-tls"
        assert {"name": "tls", "secret": {"secretName": f"cartpole-{role}-tls"}} in pod["volumes"]
        assert {"name": "tls", "mountPath": "/etc/kuberl-tls", "readOnly": True} in container["volumeMounts"]


def test_a_certificate_is_reissued_when_missing_foreign_unreadable_or_near_its_end(tmp_path):
    import base64
    from datetime import datetime, timedelta, timezone

    from kuberl.pki import make_authority
    from kuberl.security import Identity, identity_pem
    from kuberl_operator.builders import build_certificate_secret
    from kuberl_operator.certificates import reissue_reason

    ca = make_authority(tmp_path / "ca", "ca", "test CA")
    other = make_authority(tmp_path / "other", "ca", "another CA")
    exp = experiment()
    fresh = build_certificate_secret(exp, "buffer", SETTINGS, identity_pem(ca, Identity("buffer", exp.experiment_id)))
    assert fresh["metadata"]["name"] == "cartpole-buffer-tls" and fresh["type"] == "kubernetes.io/tls"
    now = datetime.now(timezone.utc)
    assert reissue_reason(fresh, ca.certificate, now) is None
    assert reissue_reason(None, ca.certificate, now) == "missing"
    assert reissue_reason({"data": {"tls.crt": "bm9wZQ=="}}, ca.certificate, now) == "unreadable"
    assert reissue_reason(fresh, other.certificate, now) == "signed by another CA"
    assert reissue_reason(fresh, ca.certificate, now + timedelta(days=25)).startswith("expires")
    assert base64.b64decode(fresh["data"]["tls.key"]).startswith(b"-----BEGIN PRIVATE KEY-----")


def test_the_configmap_holds_a_manifest_the_roles_can_load(tmp_path):
    exp = experiment({"envId": "Acrobot-v1", "learner": {"samplesPerInsert": 4}})
    path = tmp_path / "experiment.yaml"
    path.write_text(manifest_text(exp))
    loaded = load_manifest(path)
    assert loaded.name == "cartpole" and loaded.namespace == "research"
    assert loaded.config == exp.config


def test_scaling_changes_only_replicas():
    small = by_name(desired_children(experiment({"environment": {"replicas": 1}}), SETTINGS, Phase.RUNNING))
    big = by_name(desired_children(experiment({"environment": {"replicas": 5}}), SETTINGS, Phase.RUNNING))
    assert big["Deployment/cartpole-environment"]["spec"]["replicas"] == 5
    # Replicas are not part of the experiment file: scaling restarts no actor and no learner.
    assert small["ConfigMap/cartpole-config"] != big["ConfigMap/cartpole-config"]  # the spec is recorded
    for child in ("StatefulSet/cartpole-buffer", "Deployment/cartpole-learner"):
        assert small[child] == big[child]


def test_deployments_are_sized_for_the_phase():
    spec = {"environment": {"replicas": 4}, "buffer": {"replicas": 3}}

    def sizes(exp, phase):
        return [build_workload(exp, r, SETTINGS, phase)["spec"]["replicas"] for r in ("environment", "buffer",
                                                                                        "learner")]
    assert sizes(experiment({**spec, "suspend": True}), Phase.SUSPENDED) == [0, 3, 0]
    assert sizes(experiment(spec), Phase.SUCCEEDED) == [0, 3, 0]
    assert sizes(experiment({**spec, "stopped": True}), Phase.STOPPED) == [0, 3, 0]
    assert sizes(experiment(spec), Phase.RUNNING) == [4, 3, 1]


def test_a_config_change_restarts_actors_only():
    a, b = experiment(), experiment({"exploration": {"epsilonDecay": 0.9}})
    assert config_hash(a) != config_hash(b)
    template = build_workload(b, "environment", SETTINGS, Phase.RUNNING)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations[CONFIG_HASH_ANNOTATION] == config_hash(b)
    for role in ("buffer", "learner"):
        template = build_workload(b, role, SETTINGS, Phase.RUNNING)["spec"]["template"]
        assert CONFIG_HASH_ANNOTATION not in template["metadata"]["annotations"]


@pytest.mark.parametrize("spec, field", [
    ({"buffer": {"replicas": 0}}, "spec.buffer.replicas"),
    ({"learner": {"batchSize": 64}, "buffer": {"capacity": 10}}, "spec.learner.batchSize"),
    ({"environment": {"replicaz": 2}}, "spec.environment.replicaz"),
])
def test_invalid_specs_are_refused_with_the_field(spec, field):
    with pytest.raises(ConfigError) as err:
        experiment(spec)
    assert err.value.path == field


def test_settings_come_from_the_environment():
    settings = Settings.from_environ({"KUBERL_IMAGE": "kuberl:dev", "KUBERL_IMAGE_PULL_POLICY": "Never"})
    assert (settings.image, settings.image_pull_policy) == ("kuberl:dev", "Never")
    assert Settings.from_environ({}) == Settings()



@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
def test_an_observation_interval_that_is_not_positive_seconds_is_refused_naming_it(value):
    assert Settings.from_environ({"KUBERL_OPERATOR_TIMER_SECONDS": "1.5"}).observation_seconds == 1.5
    with pytest.raises(ValueError, match=f"KUBERL_OPERATOR_TIMER_SECONDS: '{value}' is not a positive"):
        Settings.from_environ({"KUBERL_OPERATOR_TIMER_SECONDS": value})


def test_children_are_plain_yaml_serialisable():
    for child in desired_children(experiment(), SETTINGS, Phase.RUNNING):
        assert yaml.safe_load(yaml.safe_dump(child)) == child


def test_resources_and_the_crash_loop_cap_come_from_the_chart():
    small = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}
    settings = Settings.from_environ({"KUBERL_CHILD_RESOURCES": json.dumps({"buffer": small}),
                                      "KUBERL_CRASH_LOOP_RESTART_LIMIT": "3"})
    assert settings.crash_loop_restart_limit == 3
    containers = {role: build_workload(experiment(), role, settings, Phase.RUNNING)["spec"]["template"]["spec"][
                  "containers"][0] for role in ("buffer", "learner")}
    assert containers["buffer"]["resources"] == small
    assert containers["learner"]["resources"] == DEFAULT_RESOURCES
    with pytest.raises(ValueError, match="unknown roles.*'shard'"):
        Settings.from_environ({"KUBERL_CHILD_RESOURCES": json.dumps({"shard": small})})


def test_an_experiment_image_replaces_the_charts_for_its_pods_only():
    own = experiment({"image": "registry.example/me/kuberl-envs:1"})
    for role in ("environment", "buffer", "learner"):
        for e, image in ((own, "registry.example/me/kuberl-envs:1"), (experiment(), SETTINGS.image)):
            container = build_workload(e, role, SETTINGS, Phase.RUNNING)["spec"]["template"]["spec"]["containers"][0]
            assert container["image"] == image
    assert own.config == experiment().config  # not an experiment knob: the roles never see it


OWNER = "uid-of-cartpole"


def listed(children: list[dict], owner: str = OWNER) -> list[dict]:
    """What the API server would list after applying `children` for `owner`."""
    live = copy.deepcopy(children)
    for child in live:
        child["metadata"]["ownerReferences"] = [{"uid": owner}]
        child["metadata"]["resourceVersion"] = "7"  # and whatever else the server adds
    return live


def desired(spec=None) -> list[dict]:
    return desired_children(experiment(spec), SETTINGS, Phase.RUNNING)


def test_each_shard_has_a_claim_kept_on_scale_down_and_deleted_with_the_experiment():
    shards = build_workload(experiment({"bufferStorage": {"size": "5Gi", "storageClassName": "fast-ssd"}}),
                            "buffer", SETTINGS, Phase.RUNNING)
    assert shards["kind"] == "StatefulSet" and shards["spec"]["serviceName"] == "cartpole-buffer"
    (claim,) = shards["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast-ssd",
                             "resources": {"requests": {"storage": "5Gi"}}}
    assert shards["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain", "whenDeleted": "Delete"}
    pod = shards["spec"]["template"]["spec"]
    assert "data" not in [v["name"] for v in pod["volumes"]]  # the claim is the data directory
    assert {"name": "data", "mountPath": "/var/lib/kuberl"} in pod["containers"][0]["volumeMounts"]
    default = build_workload(experiment(), "buffer", SETTINGS, Phase.RUNNING)["spec"]["volumeClaimTemplates"][0]
    assert default["spec"]["resources"]["requests"]["storage"] == "1Gi" and "storageClassName" not in default["spec"]
    learner = build_workload(experiment(), "learner", SETTINGS, Phase.RUNNING)["spec"]["template"]["spec"]
    assert {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}} in learner["volumes"]


@pytest.mark.parametrize("storage, field", [({"size": "lots"}, "spec.bufferStorage.size"),
                                            ({"storageClassName": "Fast_SSD"}, "spec.bufferStorage.storageClassName"),
                                            ({"sise": "1Gi"}, "spec.bufferStorage.sise")])
def test_bad_buffer_storage_is_refused_with_the_field(storage, field):
    with pytest.raises(ConfigError) as err:
        experiment({"bufferStorage": storage})
    assert err.value.path == field


def test_a_missing_child_is_created_and_a_right_one_left_alone():
    applied = plan_children(desired(), [], OWNER)
    assert len(applied.create) == 7 and not applied.apply and not applied.taken
    steady = plan_children(desired(), listed(applied.create), OWNER)
    assert steady == ChildPlan([], [], [])


def test_the_shards_deployment_of_an_older_operator_is_deleted_and_the_statefulset_made():
    older = listed(plan_children(desired(), [], OWNER).create)
    for child in older:
        if child["kind"] == "StatefulSet":
            child["kind"] = "Deployment"
    plan = plan_children(desired(), older, OWNER)
    assert [f"{c['kind']}/{c['metadata']['name']}" for c in plan.create] == ["StatefulSet/cartpole-buffer"]
    assert [f"{c['kind']}/{c['metadata']['name']}" for c in plan.delete] == ["Deployment/cartpole-buffer"]
    foreign = listed([{"kind": "Deployment", "metadata": {"name": "cartpole-extra", "namespace": "research"}}],
                     owner="uid-of-someone-else")
    assert plan_children(desired(), older + foreign, OWNER).delete == plan.delete  # never another's


def test_a_changed_spec_is_applied_to_the_children_it_changes_only():
    before = listed(plan_children(desired(), [], OWNER).create)
    changed = plan_children(desired({"environment": {"replicas": 4}}), before, OWNER)
    assert [f"{c['kind']}/{c['metadata']['name']}" for c in changed.apply] == [
        "ConfigMap/cartpole-config", "Deployment/cartpole-environment"]
    assert not changed.create


def test_someone_scaling_a_deployment_by_hand_is_undone():
    live = listed(plan_children(desired(), [], OWNER).create)
    (learner,) = [c for c in live if c["metadata"]["name"] == "cartpole-learner" and c["kind"] == "Deployment"]
    learner["spec"]["replicas"] = 3
    assert [c["metadata"]["name"] for c in plan_children(desired(), live, OWNER).apply] == ["cartpole-learner"]


def test_a_child_owned_by_another_object_is_not_touched():
    live = listed(plan_children(desired(), [], OWNER).create, owner="uid-of-someone-else")
    plan = plan_children(desired(), live, OWNER)
    assert not plan.create and not plan.apply and len(plan.taken) == 7
    assert "ConfigMap cartpole-config exists and is not this experiment's" in plan.taken


def test_an_experiment_is_gone_when_its_name_vanishes_or_comes_back_with_another_uid():
    from kuberl_operator.handlers import gone

    a, b = {"namespace": "n", "name": "a", "uid": "1"}, {"namespace": "n", "name": "b", "uid": "2"}
    before = {("n", "a"): a, ("n", "b"): b}
    assert gone(before, before) == []
    assert gone(before, {("n", "a"): a}) == [b]
    assert gone(before, {("n", "a"): {**a, "uid": "3"}, ("n", "b"): b}) == [a]  # deleted and re-created
    assert gone({}, before) == []


def test_pods_are_placed_by_the_spec_over_the_charts_defaults():
    chart = Settings.from_environ({"KUBERL_CHILD_PLACEMENT": json.dumps({
        "nodeSelector": {"pool": "cpu"}, "priorityClassName": "batch", "imagePullSecrets": ["registry"]})})
    exp = experiment({"placement": {"nodeSelector": {"pool": "gpu"},
                                    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]},
                      "resources": {"learner": {"requests": {"cpu": 2, "memory": "2Gi"}, "limits": {"memory": "4Gi"}}}})
    for role in ("environment", "buffer", "learner"):
        pod = build_workload(exp, role, chart, Phase.RUNNING)["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"pool": "gpu"}  # the spec's, not the chart's
        assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert pod["priorityClassName"] == "batch" and pod["imagePullSecrets"] == [{"name": "registry"}]
        assert "affinity" not in pod
    learner = build_workload(exp, "learner", chart, Phase.RUNNING)["spec"]["template"]["spec"]["containers"][0]
    assert learner["resources"] == {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    actor = build_workload(exp, "environment", chart, Phase.RUNNING)["spec"]["template"]["spec"]["containers"][0]
    assert actor["resources"] == DEFAULT_RESOURCES
    bare = build_workload(experiment(), "learner", SETTINGS, Phase.RUNNING)["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"} & set(bare)


@pytest.mark.parametrize("spec, field", [
    ({"placement": {"nodeSelector": {"pool": 3}}}, "spec.placement.nodeSelector"),
    ({"placement": {"tolerations": [{"key": "a", "colour": "red"}]}}, "spec.placement.tolerations[0]"),
    ({"placement": {"affinity": {"nearby": {}}}}, "spec.placement.affinity"),
    ({"placement": {"priorityClassName": "Not_Valid"}}, "spec.placement.priorityClassName"),
    ({"placement": {"imagePullSecrets": [{"name": "x"}]}}, "spec.placement.imagePullSecrets"),
    ({"placement": {"zone": "a"}}, "spec.placement.zone"),
    ({"resources": {"shard": {}}}, "spec.resources.shard"),
    ({"resources": {"buffer": {"limits": {"memory": "lots"}}}}, "spec.resources.buffer.limits.memory"),
    ({"image": "my image"}, "spec.image"),
    ({"image": ""}, "spec.image"),
    ({"image": 7}, "spec.image"),
])
def test_bad_placement_and_resources_are_refused_with_the_field(spec, field):
    with pytest.raises(ConfigError) as err:
        experiment(spec)
    assert err.value.path == field
