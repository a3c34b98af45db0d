"""The checked-in generated code matches protos/ (regenerate with `python -m kuberl.protogen`)."""

from kuberl import protogen


def test_generated_code_is_fresh():
    stale = protogen.stale_files()
    assert not stale, f"stale generated code, run `python -m kuberl.protogen`: {stale}"
