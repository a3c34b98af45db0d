"""The README documents what users type and every manifest field."""

import dataclasses
import re

from kuberl.config import ExperimentConfig, _camel
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def field_paths(obj, prefix="spec."):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from field_paths(value, f"{prefix}{_camel(f.name)}.")
        else:
            yield prefix + _camel(f.name)


def test_every_manifest_field_is_documented():
    missing = [p for p in field_paths(ExperimentConfig()) if f"`{p}`" not in README]
    assert not missing


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert 'pip install -e ".[local]" && kuberl run examples/cartpole.yaml' in commands
    assert "bash tests/run.sh" in commands
    assert "bash tests/run.sh" in (REPO / ".ci" / "run").read_text()


def test_the_readme_shows_the_authorization_table_as_the_code_has_it():
    from kuberl.security import authorization_markdown

    assert authorization_markdown() in README
