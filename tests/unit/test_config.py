import copy
import math
from pathlib import Path

import pytest
import yaml

from kuberl import config as C
from kuberl.config import ConfigError, ExperimentConfig, from_proto, from_spec, to_proto, to_spec
from kuberl.v1 import common_pb2

REPO = Path(__file__).resolve().parents[2]
CARTPOLE = REPO / "examples" / "cartpole.yaml"


def manifest(**overrides):
    doc = {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment",
           "metadata": {"name": "cartpole"}, "spec": {"envId": "CartPole-v1"}}
    doc.update(overrides)
    return doc


def test_defaults_match_the_seed():
    cfg = ExperimentConfig()
    assert (cfg.exploration.epsilon_start, cfg.exploration.epsilon_end, cfg.exploration.epsilon_decay) == (
        1.0, 0.05, 0.995)
    assert cfg.environment.policy_refresh_steps == 50
    assert cfg.environment.max_episode_steps == 500
    assert cfg.environment.step_delay_seconds == 0
    assert cfg.buffer.capacity == 10_000
    assert cfg.learner.batch_size == 32
    assert cfg.learner.hidden_sizes == [64, 64]
    assert cfg.env_id == "CartPole-v1"


def test_default_lists_are_not_shared():
    a, b = ExperimentConfig(), ExperimentConfig()
    a.learner.hidden_sizes.append(1)
    assert b.learner.hidden_sizes == [64, 64]


def test_from_spec_reads_camel_case():
    cfg = from_spec({"envId": "Acrobot-v1", "seed": 7,
                     "environment": {"envsPerReplica": 3, "maxEpisodeSteps": 20, "stepDelaySeconds": 0.005},
                     "exploration": {"epsilonStart": 0.5, "epsilonEnd": 0.1, "epsilonDecay": 0.9},
                     "buffer": {"capacity": 100, "snapshotIntervalSeconds": 0},
                     "learner": {"batchSize": 16, "hiddenSizes": [8, 4], "learningStarts": 0},
                     "stop": {"targetReturn": -100.5}})
    assert cfg.env_id == "Acrobot-v1" and cfg.seed == 7
    assert cfg.environment.envs_per_replica == 3 and cfg.environment.max_episode_steps == 20
    assert cfg.environment.step_delay_seconds == 0.005
    assert cfg.exploration.epsilon_decay == 0.9
    assert cfg.buffer.capacity == 100 and cfg.buffer.snapshot_interval_seconds == 0.0
    assert cfg.learner.batch_size == 16 and cfg.learner.hidden_sizes == [8, 4] and cfg.learner.learning_starts == 0
    assert cfg.stop.target_return == -100.5
    # untouched knobs keep their defaults
    assert cfg.learner.gamma == 0.99 and cfg.environment.replicas == 1


def test_from_spec_none_and_empty_give_defaults():
    assert from_spec(None) == ExperimentConfig()
    assert from_spec({}) == ExperimentConfig()
    assert from_spec({"learner": None}) == ExperimentConfig()


def test_integral_float_is_accepted_as_int():
    cfg = from_spec({"environment": {"replicas": 2.0}})
    assert cfg.environment.replicas == 2 and isinstance(cfg.environment.replicas, int)


def test_int_is_accepted_for_float():
    cfg = from_spec({"learner": {"gamma": 1}})
    assert cfg.learner.gamma == 1.0 and isinstance(cfg.learner.gamma, float)


@pytest.mark.parametrize("spec, path", [
    ({"buffer": {"capcity": 10}}, "spec.buffer.capcity"),
    ({"envID": "CartPole-v1"}, "spec.envID"),
    ({"learner": {"batch_size": 8}}, "spec.learner.batch_size"),  # snake_case is not the spec's spelling
])
def test_unknown_field_is_refused_with_its_path(spec, path):
    with pytest.raises(ConfigError) as err:
        from_spec(spec)
    assert err.value.path == path
    assert str(err.value).startswith(path + ":")
    assert "unknown field" in str(err.value)


@pytest.mark.parametrize("spec, path", [
    ({"environment": {"replicas": "2"}}, "spec.environment.replicas"),
    ({"environment": {"replicas": True}}, "spec.environment.replicas"),
    ({"seed": False}, "spec.seed"),
    ({"environment": {"replicas": 1.5}}, "spec.environment.replicas"),
    ({"seed": math.nan}, "spec.seed"),
    ({"learner": {"gamma": math.nan}}, "spec.learner.gamma"),
    ({"learner": {"learningRate": math.inf}}, "spec.learner.learningRate"),
    ({"learner": {"gamma": "0.9"}}, "spec.learner.gamma"),
    ({"learner": {"hiddenSizes": 64}}, "spec.learner.hiddenSizes"),
    ({"learner": {"hiddenSizes": [64, "64"]}}, "spec.learner.hiddenSizes[1]"),
    ({"learner": {"hiddenSizes": []}}, "spec.learner.hiddenSizes"),
    ({"envId": ""}, "spec.envId"),
    ({"envKwargs": [1]}, "spec.envKwargs"),
    ({"envKwargs": {"a": math.nan}}, "spec.envKwargs.a"),
    ({"envKwargs": {"a": {"b": [1, math.inf]}}}, "spec.envKwargs.a.b[1]"),
    ({"envKwargs": {"a": "x" * 20_000}}, "spec.envKwargs"),
    ({"envId": 3}, "spec.envId"),
    ({"buffer": [1, 2]}, "spec.buffer"),
    ({"stop": {"targetReturn": "high"}}, "spec.stop.targetReturn"),
])
def test_wrong_types_are_refused(spec, path):
    with pytest.raises(ConfigError) as err:
        from_spec(spec)
    assert err.value.path == path


@pytest.mark.parametrize("spec, path", [
    ({"environment": {"replicas": -1}}, "spec.environment.replicas"),
    ({"environment": {"replicas": 257}}, "spec.environment.replicas"),
    ({"buffer": {"replicas": 0}}, "spec.buffer.replicas"),
    ({"exploration": {"epsilonDecay": 0}}, "spec.exploration.epsilonDecay"),
    ({"exploration": {"epsilonDecay": 1.01}}, "spec.exploration.epsilonDecay"),
    ({"learner": {"learningRate": 0.0}}, "spec.learner.learningRate"),
    ({"learner": {"hiddenSizes": [0, 64]}}, "spec.learner.hiddenSizes[0]"),
    ({"seed": -1}, "spec.seed"),
    ({"seed": 2**32}, "spec.seed"),
])
def test_out_of_bounds_values_are_refused(spec, path):
    with pytest.raises(ConfigError) as err:
        from_spec(spec)
    assert err.value.path == path


@pytest.mark.parametrize("spec", [
    {"environment": {"replicas": 0}},
    {"exploration": {"epsilonDecay": 1.0}},
    {"seed": 2**32 - 1},
    {"learner": {"gamma": 0.0}},
])
def test_bounds_are_inclusive_where_documented(spec):
    from_spec(spec)


@pytest.mark.parametrize("spec, path", [
    ({"exploration": {"epsilonStart": 0.1, "epsilonEnd": 0.2}}, "spec.exploration.epsilonEnd"),
    ({"buffer": {"capacity": 16}, "learner": {"batchSize": 17}}, "spec.learner.batchSize"),
    ({"learner": {"hiddenSizes": [8] * 9}}, "spec.learner.hiddenSizes"),
    ({"learner": {"dueling": "yes"}}, "spec.learner.dueling"),
    ({"learner": {"dueling": 1}}, "spec.learner.dueling"),
])
def test_cross_field_rules(spec, path):
    with pytest.raises(ConfigError) as err:
        from_spec(spec)
    assert err.value.path == path


def test_cross_field_edges_are_allowed():
    cfg = from_spec({"exploration": {"epsilonStart": 0.2, "epsilonEnd": 0.2},
                     "buffer": {"capacity": 16}, "learner": {"batchSize": 16}})
    assert cfg.learner.batch_size == cfg.buffer.capacity == 16
    for widths in ([64], [8] * 8):
        assert from_spec({"learner": {"hiddenSizes": widths, "dueling": True}}).learner.hidden_sizes == widths


def a_custom_config():
    return from_spec({"envId": "Acrobot-v1", "seed": 2**32 - 1,
                      "environment": {"replicas": 0, "envsPerReplica": 3, "stepDelaySeconds": 0.25},
                      "exploration": {"epsilonStart": 0.5, "epsilonEnd": 0.0, "epsilonDecay": 0.5},
                      "buffer": {"replicas": 3, "capacity": 100_000_000, "snapshotIntervalSeconds": 0},
                      "learner": {"batchSize": 7, "learningRate": 1e-4, "gamma": 0.0, "hiddenSizes": [3, 5],
                                  "learningStarts": 0, "maxGradNorm": 0.5, "samplesPerInsert": 0.25},
                      "stop": {"targetReturn": -80.5, "evalEpisodes": 3, "maxEnvSteps": 10_000_000_000}})


@pytest.mark.parametrize("cfg", [ExperimentConfig(), a_custom_config()], ids=["defaults", "custom"])
def test_proto_round_trip(cfg):
    msg = to_proto(cfg)
    wire = common_pb2.ExperimentConfig.FromString(msg.SerializeToString())
    assert from_proto(wire) == cfg


def test_proto_carries_the_values():
    msg = to_proto(a_custom_config())
    assert msg.env_id == "Acrobot-v1"
    assert msg.environment.replicas == 0 and msg.environment.HasField("replicas")
    assert list(msg.learner.hidden_sizes) == [3, 5]
    assert msg.stop.target_return == -80.5


def test_to_proto_leaves_unset_optional_out():
    assert not to_proto(ExperimentConfig()).stop.HasField("target_return")


def test_from_proto_of_empty_message_gives_defaults():
    assert from_proto(common_pb2.ExperimentConfig()) == ExperimentConfig()


def test_from_proto_validates_with_config_path():
    msg = to_proto(ExperimentConfig())
    msg.environment.replicas = -1
    with pytest.raises(ConfigError) as err:
        from_proto(msg)
    assert err.value.path == "config.environment.replicas"


@pytest.mark.parametrize("cfg", [ExperimentConfig(), a_custom_config()], ids=["defaults", "custom"])
def test_spec_round_trip(cfg):
    spec = to_spec(cfg)
    assert from_spec(copy.deepcopy(spec)) == cfg


def test_to_spec_is_camel_case_and_drops_none():
    spec = to_spec(ExperimentConfig())
    assert spec["envId"] == "CartPole-v1"
    assert spec["learner"]["batchSize"] == 32 and spec["learner"]["hiddenSizes"] == [64, 64]
    assert "targetReturn" not in spec["stop"]


def test_replace_changes_only_the_named_knobs():
    cfg = ExperimentConfig().replace(learner={"batch_size": 64}, seed=3)
    assert cfg.learner.batch_size == 64 and cfg.seed == 3
    assert cfg.learner.gamma == 0.99 and cfg.buffer == ExperimentConfig().buffer


# --- manifests ----------------------------------------------------------------------------


def test_parse_manifest_ok():
    exp = C.parse_manifest(manifest(metadata={"name": "cart-pole-1", "namespace": "rl"}))
    assert (exp.name, exp.namespace) == ("cart-pole-1", "rl")
    assert exp.config == ExperimentConfig()


def test_parse_manifest_defaults_namespace_and_drops_cluster_only_knobs():
    exp = C.parse_manifest(manifest(spec={"suspend": True, "ttlSecondsAfterFinished": 60, "seed": 4}))
    assert exp.namespace == "default" and exp.config.seed == 4


@pytest.mark.parametrize("doc, path", [
    (manifest(apiVersion="kuberl.dev/v1"), "apiVersion"),
    ({k: v for k, v in manifest().items() if k != "apiVersion"}, "apiVersion"),
    (manifest(kind="Experiment"), "kind"),
    (manifest(metadata=None), "metadata"),
    (manifest(metadata={}), "metadata.name"),
    (manifest(metadata={"name": "CartPole"}), "metadata.name"),
    (manifest(metadata={"name": "a" * 64}), "metadata.name"),
    (manifest(metadata={"name": "-a"}), "metadata.name"),
    (manifest(metadata={"name": "a_b"}), "metadata.name"),
    (manifest(metadata={"name": "ok", "namespace": "Bad"}), "metadata.namespace"),
    ({k: v for k, v in manifest().items() if k != "spec"}, "spec"),
    (manifest(extra=1), "extra"),
    (manifest(spec={"buffer": {"capcity": 1}}), "spec.buffer.capcity"),
    (["not", "a", "mapping"], "(document)"),
])
def test_parse_manifest_refuses(doc, path):
    with pytest.raises(ConfigError) as err:
        C.parse_manifest(doc)
    assert err.value.path == path


def test_names_leave_room_for_the_childrens_names_and_the_shards_revision_label():
    assert C.parse_manifest(manifest(metadata={"name": "a" * 45})).name == "a" * 45
    assert len("a" * 45 + "-environment") <= 63  # a Service name: a DNS-1035 label
    assert len("a" * 45 + "-buffer-" + "0123456789") <= 63  # controller-revision-hash: a label value
    for name in ("a" * 46, "1abc", "-abc", "abc-"):
        with pytest.raises(ConfigError) as err:
            C.parse_manifest(manifest(metadata={"name": name}))
        assert err.value.path == "metadata.name"


def test_name_with_trailing_newline_is_refused():
    with pytest.raises(ConfigError):
        C.parse_manifest(manifest(metadata={"name": "cartpole\n"}))


@pytest.mark.parametrize("spec", [[1, 2], 5])
def test_non_mapping_spec_is_a_config_error(spec):
    with pytest.raises(ConfigError) as err:
        C.parse_manifest(manifest(spec=spec))
    assert err.value.path == "spec"


def test_load_example_manifest():
    exp = C.load_manifest(CARTPOLE)
    assert exp.name == "cartpole"
    assert exp.config.environment.replicas == 2
    assert exp.config.buffer.replicas == 2
    assert exp.config.learner.batch_size == 64 and exp.config.seed == 1


def test_load_manifest_with_two_documents_is_refused(tmp_path):
    text = CARTPOLE.read_text()
    path = tmp_path / "two.yaml"
    path.write_text(text + "\n---\n" + text)
    with pytest.raises(ConfigError, match="2 documents") as err:
        C.load_manifest(path)
    assert err.value.path == str(path)


def test_load_manifest_ignores_empty_documents(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("---\n" + CARTPOLE.read_text() + "\n---\n")
    assert C.load_manifest(path).name == "cartpole"


@pytest.mark.parametrize("text", ["spec: [unclosed\n", "a: b: c\n", "key: 'open\n"])
def test_load_manifest_with_invalid_yaml_is_refused(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        C.load_manifest(path)
    assert err.value.path == str(path)


def test_load_manifest_empty_or_missing_file(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="0 documents"):
        C.load_manifest(tmp_path / "empty.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        C.load_manifest(tmp_path / "missing.yaml")


@pytest.mark.parametrize("spec, field", [({"suspend": "no"}, "spec.suspend"),
                                         ({"ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
                                         ({"ttlSecondsAfterFinished": 1.5}, "spec.ttlSecondsAfterFinished")])
def test_cluster_only_fields_are_checked_too(spec, field):
    with pytest.raises(ConfigError) as err:
        C.parse_manifest(manifest(spec=spec))
    assert err.value.path == field


def test_an_experiment_is_known_by_its_namespace_name_and_uid():
    from kuberl.config import Manifest, parse_manifest, scoped_experiment_id

    doc = {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment", "spec": {},
           "metadata": {"name": "cartpole", "namespace": "team-a", "uid": "6f1c2a9e-0b7d-4a8e-9c1f-2d3e4f5a6b7c"}}
    manifest = parse_manifest(doc)
    assert manifest.experiment_id == "team-a/cartpole#6f1c2a9e"
    assert parse_manifest(yaml.safe_load(manifest.manifest_text())) == manifest  # the file the roles read
    assert scoped_experiment_id("team-b", "cartpole") == "team-b/cartpole" != manifest.experiment_id
    local = parse_manifest({**doc, "metadata": {"name": "cartpole"}})
    assert local.experiment_id == "default/cartpole" and isinstance(local, Manifest)
    longest = scoped_experiment_id("n" * 63, "c" * C.MAX_NAME_LENGTH, "f" * 36)
    assert len(longest) <= 128  # what every role and the metrics store accept
    with pytest.raises(ConfigError, match="metadata.uid"):
        parse_manifest({**doc, "metadata": {"name": "cartpole", "uid": "../../etc"}})
