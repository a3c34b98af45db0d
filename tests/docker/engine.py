"""A Docker engine, a base image and the project's image, made on a machine that has no registry.

- The engine: `dockerd` from Debian's docker.io (tests/run.sh installs it), started here in the
  background when `docker info` finds none.
- The base image: Debian bookworm with Python 3.11 from Debian packages, made by debootstrap and
  `docker import` (no registry is reachable to pull python:3.11-slim). It also carries this
  machine's extra CA certificates, because pip inside `docker build` talks through a TLS-
  intercepting proxy here. That belongs to the test setup only: the project's Dockerfile is
  built unchanged, with this image passed as its BASE_IMAGE build ARG.
- The project image: `docker build` of the repo's Dockerfile; Docker's layer cache makes a
  second build fast, and the base image is kept between runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "kuberl-test-base:bookworm"
PROJECT_IMAGE = "kuberl:test"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
DOCKERD_LOG = Path(tempfile.gettempdir()) / "kuberl-dockerd.log"
TESTS_LABEL = "dev.kuberl.built-by=tests"


class DockerUnavailable(RuntimeError):
    """No Docker engine can run here; the message says why."""


def docker(*args: str, timeout: float = 300, check: bool = True, input: bytes | None = None
           ) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stdout.decode(errors='replace')[-3000:]}\n{done.stderr.decode(errors='replace')[-3000:]}")
    return done


def _engine_answers() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_engine(timeout: float = 60) -> subprocess.Popen | None:
    """A running engine: the one there is (None), or a dockerd started now in the background
    (returned, so that whoever started it can stop it)."""
    if shutil.which("docker") is None:
        raise DockerUnavailable("no docker client (apt-get install docker.io)")
    if _engine_answers():
        return None
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise DockerUnavailable("no Docker engine and no dockerd to start (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise DockerUnavailable("dockerd is not running and only root can start it")
    with open(DOCKERD_LOG, "ab") as log:
        process = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _engine_answers():
            return process
        time.sleep(0.5)
    raise DockerUnavailable(f"dockerd did not answer within {timeout:.0f}s: {DOCKERD_LOG.read_text()[-2000:]}")


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, timeout=30, check=False).returncode == 0


def ensure_base_image() -> str:
    """Debian bookworm + python3 (3.11) + venv + this machine's CA certificates, as BASE_IMAGE."""
    certificates = sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []
    # The tag names the certificates too: a machine with other CAs gets its own base image.
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in certificates)).hexdigest()[:12]
    tag = f"{BASE_IMAGE}-{digest}"
    if image_exists(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise DockerUnavailable("no debootstrap to build a base image (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="kuberl-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        "bookworm", str(root), DEBIAN_MIRROR], check=True, capture_output=True, timeout=900)
        for cert in certificates:
            shutil.copy(cert, root / "usr/local/share/ca-certificates" / cert.name)
        subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True, timeout=120)
        for junk in ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/lib/apt/lists", "var/cache/apt"):
            shutil.rmtree(root / junk, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "--change", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                                   "--change", 'CMD ["/bin/bash"]', "-", tag], stdin=tar.stdout, capture_output=True,
                                  timeout=600)
        tar.wait()
        if imported.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr.decode(errors='replace')}")
    return tag


def build(tag: str, context: Path | str, base: str | None = None, timeout: float = 1800) -> str:
    """`docker build` of the Dockerfile in `context` as `tag` (on `base` as BASE_IMAGE), labelled
    as the tests' own so that `prune_replaced_builds` may remove it once a rebuild takes its tag."""
    base_arg = ["--build-arg", f"BASE_IMAGE={base}"] if base else []
    docker("build", *base_arg, "--label", TESTS_LABEL, "-t", tag, str(context), timeout=timeout)
    return tag


def prune_replaced_builds() -> None:
    """Removes the tests' images that a rebuild has taken the tag from: one per changed build, they
    filled the disk (11 GB after ~70 test runs). The build cache stays, and so do other images."""
    docker("image", "prune", "--force", "--filter", f"label={TESTS_LABEL}", timeout=600)


def build_project_image(base: str) -> tuple[str, float]:
    """The repo's Dockerfile built on `base`; returns the image and the seconds the build took."""
    started = time.monotonic()
    build(PROJECT_IMAGE, REPO, base)
    return PROJECT_IMAGE, time.monotonic() - started


def image_size_mb(name: str) -> float:
    size = docker("image", "inspect", name, "--format", "{{.Size}}", timeout=30).stdout.decode().strip()
    return int(size) / 1e6
