"""The local cluster's binaries, built from the official Go modules and cached per machine.

No registry or download site is reachable here, only the Go module proxy. Most of the modules
we need refuse `go install` because their go.mod replaces sibling modules with local paths
(Kubernetes' staging modules, etcd's api/client/pkg) or pins dependencies with replace and
exclude directives (skaffold). So each component is built inside a small wrapper module of
ours that requires it at its release and carries its directives over, read with
`go mod edit -json` from the release's own go.mod: a local-path replace becomes the sibling
module at the matching published version, every other replace and exclude is copied as is.

Each build lands in `<cache>/<name>-<version>-<recipe hash>/bin` and is marked complete only
when every binary is there; a later run finds it and builds nothing. The Go build cache makes
a rebuild after a recipe change cost minutes instead of the cold tens of minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.tools import locked

HERE = Path(__file__).resolve().parent
COMPLETE = ".complete"


class BuildError(RuntimeError):
    """A component could not be built; the message has the command and its output."""


def cache_root() -> Path:
    """`$KUBERL_CLUSTER_CACHE`, else `$XDG_CACHE_HOME/kuberl/localcluster` (`~/.cache/...`)."""
    explicit = os.environ.get("KUBERL_CLUSTER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kuberl" / "localcluster"


def _kubernetes_ldflags(version: str, build_date: str) -> tuple[str, ...]:
    # Without these, /version says v0.0.0 and clients that check the server version break.
    major, minor = version.removeprefix("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor),
                           ("gitTreeState", "clean"), ("buildDate", build_date)):
            flags.append(f"-X {package}.{key}={value}")
    return tuple(flags)


@dataclass(frozen=True)
class Component:
    """One module at one release, and the commands of it that the cluster runs."""

    name: str
    module: str  # "" for a program whose source is in this repository (source_dir)
    version: str
    packages: tuple[str, ...]
    # The published version of the siblings the release's go.mod replaces with local paths.
    sibling_version: str = ""
    tags: tuple[str, ...] = ()
    cgo: bool = False
    kubernetes_version_flags: bool = False
    # Version variables to set at link time: "-X" package.variable, given the release's version.
    version_variables: tuple[str, ...] = ()
    # go build names a binary after its package path ("server" for .../server/v3): new names.
    renames: tuple[tuple[str, str], ...] = ()
    source_dir: Path | None = field(default=None, compare=False)

    def recipe(self) -> str:
        """Everything that decides the binaries: a change builds them anew."""
        source = ""
        if self.source_dir is not None:
            source = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(self.source_dir.rglob("*"))
                                             if p.is_file())).hexdigest()
        return json.dumps([self.module, self.version, self.packages, self.sibling_version, self.tags, self.cgo,
                           self.kubernetes_version_flags, self.version_variables, self.renames, source,
                           _go_version()])

    @property
    def directory(self) -> Path:
        digest = hashlib.sha256(self.recipe().encode()).hexdigest()[:10]
        return cache_root() / f"{self.name}-{self.version}-{digest}"

    @property
    def bin(self) -> Path:
        return self.directory / "bin"

    def binary(self, command: str) -> Path:
        return self.bin / command

    @property
    def built(self) -> bool:
        return (self.directory / COMPLETE).is_file()


KUBERNETES_VERSION = "v1.37.2"
KUBERNETES = Component(
    "kubernetes", "k8s.io/kubernetes", KUBERNETES_VERSION,
    tuple(f"k8s.io/kubernetes/cmd/{c}" for c in
          ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl")),
    sibling_version="v0." + KUBERNETES_VERSION.removeprefix("v1."), kubernetes_version_flags=True)
ETCD = Component("etcd", "go.etcd.io/etcd/server/v3", "v3.7.3", ("go.etcd.io/etcd/server/v3",),
                 sibling_version="v3.7.3", renames=(("server", "etcd"),))
# containerd 2: Kubernetes 1.36 and later no longer support containerd 1.x (Debian's 1.6).
# No btrfs headers here, and the cluster uses only the overlayfs snapshotter.
CONTAINERD = Component(
    "containerd", "github.com/containerd/containerd/v2", "v2.4.2",
    tuple(f"github.com/containerd/containerd/v2/cmd/{c}" for c in ("containerd", "containerd-shim-runc-v2", "ctr")),
    tags=("no_btrfs", "no_devmapper", "no_zfs"))
COREDNS = Component("coredns", "github.com/coredns/coredns", "v1.15.0", ("github.com/coredns/coredns",))
LOCAL_PATH_PROVISIONER = Component("local-path-provisioner", "github.com/rancher/local-path-provisioner", "v0.0.30",
                                   ("github.com/rancher/local-path-provisioner",))
SKAFFOLD = Component("skaffold", "github.com/GoogleContainerTools/skaffold/v2", "v2.16.1",
                     ("github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold",),
                     version_variables=("github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version",))
# compose.yaml's test: Compose v2 (Debian 12 packages only 1.29), run as a standalone docker-compose.
COMPOSE = Component("compose", "github.com/docker/compose/v2", "v2.40.3", ("github.com/docker/compose/v2/cmd",),
                    version_variables=("github.com/docker/compose/v2/internal.Version",),
                    renames=(("cmd", "docker-compose"),))
# The pod sandbox's process: ours (tests/localcluster/pause), as no image can be pulled.
PAUSE = Component("pause", "", "v1", (".",), source_dir=HERE / "pause")

CLUSTER_COMPONENTS = (ETCD, KUBERNETES, CONTAINERD, COREDNS, LOCAL_PATH_PROVISIONER, PAUSE)


def _go_version() -> str:
    go = shutil.which("go")
    if go is None:
        return ""
    return subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def why_not_buildable() -> str | None:
    """Why this machine cannot build the cluster, or None when it can."""
    if shutil.which("go") is None:
        return "no Go toolchain (the local cluster is built from the Go module proxy)"
    if os.geteuid() != 0:
        return "not root (a kubelet and a container runtime need root)"
    if sys.platform != "linux":
        return f"not Linux ({sys.platform})"
    return None


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(command)} (in {cwd}) failed with {done.returncode}:\n"
                         f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def _module_info(module: str, version: str, env: dict[str, str], cwd: Path) -> dict:
    return json.loads(_run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd, env, 900))


def wrapper_go_mod(component: Component, release_go_mod: dict, go_version: str) -> str:
    """The wrapper module's go.mod: requires the release, carries its replace and exclude
    directives over (local-path replaces become the published siblings)."""
    lines = [f"module kuberl.dev/localcluster/{component.name}", "", f"go {go_version.removeprefix('go')}", "",
             f"require {component.module} {component.version}", ""]
    replaces = []
    for replace in release_go_mod.get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        left = old["Path"] + (f" {old['Version']}" if old.get("Version") else "")
        if new["Path"].startswith((".", "/")):
            if not component.sibling_version:
                raise BuildError(f"{component.module} replaces {old['Path']} with {new['Path']}: "
                                 "say which published version stands for it (sibling_version)")
            replaces.append(f"\t{left} => {old['Path']} {component.sibling_version}")
        else:
            replaces.append(f"\t{left} => {new['Path']} {new['Version']}")
    if replaces:
        lines += ["replace (", *replaces, ")", ""]
    excludes = [f"\t{e['Path']} {e['Version']}" for e in release_go_mod.get("Exclude") or []]
    if excludes:
        lines += ["exclude (", *excludes, ")", ""]
    return "\n".join(lines)


def build(component: Component, log=print) -> Path:
    """The component's bin directory, built now unless a complete build is cached."""
    if component.built:
        return component.bin
    reason = why_not_buildable()
    if reason:
        raise BuildError(reason)
    with locked(component.directory):
        if component.built:  # another process built it while we waited for the lock
            return component.bin
        started = time.monotonic()
        log(f"[localcluster] building {component.name} {component.version} (cached in {component.directory}) ...")
        env = {**os.environ, "CGO_ENABLED": "1" if component.cgo else "0", "GOFLAGS": "-mod=mod -buildvcs=false"}
        source = component.directory / "src"
        shutil.rmtree(component.bin, ignore_errors=True)
        component.bin.mkdir(parents=True)
        if component.source_dir is not None:
            shutil.rmtree(source, ignore_errors=True)
            shutil.copytree(component.source_dir, source)
            ldflags = ["-s", "-w"]
        else:
            source.mkdir(exist_ok=True)
            info = _module_info(component.module, component.version, env, source)
            release_go_mod = json.loads(_run(["go", "mod", "edit", "-json", info["GoMod"]], source, env, 60))
            (source / "go.mod").write_text(wrapper_go_mod(component, release_go_mod, _go_version()))
            (source / "go.sum").unlink(missing_ok=True)
            ldflags = ["-s", "-w"]
            if component.kubernetes_version_flags:
                ldflags += _kubernetes_ldflags(component.version, info.get("Time") or "1970-01-01T00:00:00Z")
            ldflags += [f"-X {variable}={component.version}" for variable in component.version_variables]
        command = ["go", "build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", str(component.bin) + "/"]
        if component.tags:
            command += ["-tags", ",".join(component.tags)]
        _run(command + list(component.packages), source, env, 3600)
        for built_name, name in component.renames:
            (component.bin / built_name).rename(component.bin / name)
        (component.directory / COMPLETE).write_text(f"built in {time.monotonic() - started:.0f}s\n")
        log(f"[localcluster] built {component.name} in {time.monotonic() - started:.0f}s: "
            f"{', '.join(sorted(p.name for p in component.bin.iterdir()))}")
    return component.bin
