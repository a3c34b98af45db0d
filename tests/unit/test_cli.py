"""CLI conventions: the version, and the exit codes the help lists."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from kuberl.cli import main
from kuberl.exitcodes import ExitCode


def test_version_is_the_installed_packages(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"kuberl {version('kuberl')}"


def test_help_lists_every_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for code in ExitCode:
        assert f"{code.value} {code.name.lower().replace('_', ' ')}" in out


def test_a_missing_run_is_a_usage_error_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "nothing-here"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert not captured.out and "nothing-here" in captured.err


@pytest.mark.parametrize("command", [["run", "examples/cartpole.yaml"], ["up"]])
def test_a_bad_listen_port_range_is_a_usage_error_before_anything_starts(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBERL_LISTEN_PORTS", "30000-20000")
    assert main(command) == ExitCode.USAGE
    assert "KUBERL_LISTEN_PORTS: '30000-20000' is not a range" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [], "no run directory, no roles"


def test_a_lifeline_fd_that_is_not_open_is_a_usage_error(capsys):
    assert main(["serve", "policy", "--insecure", "--port", "0", "--lifeline-fd", "987"]) == ExitCode.USAGE
    assert "--lifeline-fd 987: Bad file descriptor" in capsys.readouterr().err


@pytest.mark.parametrize("flag, env", [(["--result-retention-seconds", "-5"], None), ([], "-1")])
def test_a_negative_result_retention_is_a_usage_error_naming_the_flag(monkeypatch, capsys, flag, env):
    if env is not None:
        monkeypatch.setenv("KUBERL_RESULT_RETENTION_SECONDS", env)
    with pytest.raises(SystemExit) as exited:
        main(["serve", "policy", "--insecure", "--port", "0", *flag])
    assert exited.value.code == ExitCode.USAGE
    assert "--result-retention-seconds: result retention: must be >= 0 seconds" in capsys.readouterr().err


def test_metrics_bind_the_images_listen_address_as_grpc_spells_it():
    """The image sets KUBERL_HOST=[::] (gRPC's spelling); /metrics must bind it too."""
    import urllib.request

    from kuberl.prometheus import serve_metrics

    port = serve_metrics(0, "[::]")
    assert b"grpc_server_handled_total" in urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=5).read()
