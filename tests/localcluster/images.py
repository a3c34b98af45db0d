"""Every image a pod of the local cluster runs: built here with Docker, imported into containerd.

Nothing is ever pulled (every image a pod names has `imagePullPolicy: Never` or is already in
the store). The cluster's own images are static Go binaries on an empty filesystem; the helper
pod of the local-path provisioner and the chart's MariaDB start from the locally made Debian
base (tests/docker/engine.py), as the project's image does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.docker import engine
from tests.localcluster import build
from tests.localcluster.cluster import Layout, ctr, ctr_argv

HERE = Path(__file__).resolve().parent
# The name containerd's config pins as its sandbox image: it must be in the store by that name.
PAUSE_IMAGE = "kuberl.local/pause:v1"
COREDNS_IMAGE = f"kuberl.local/coredns:{build.COREDNS.version}"
LOCAL_PATH_IMAGE = f"kuberl.local/local-path-provisioner:{build.LOCAL_PATH_PROVISIONER.version}"
MARIADB_IMAGE = "kuberl.local/mariadb:10.11"
# A tag that names one build's content (skaffold tags every build by a digest): no later run
# deploys it again.
ONE_BUILD_TAG = re.compile(r"[:_][0-9a-f]{64}$")


def _binary_image(tag: str, binary: Path) -> str:
    """An image holding one static binary as its entrypoint, run as an unprivileged user."""
    if engine.image_exists(tag) and _label(tag, "kuberl.binary-size") == str(binary.stat().st_size):
        return tag
    with tempfile.TemporaryDirectory(prefix="kuberl-image-") as context:
        shutil.copy(binary, Path(context) / binary.name)
        (Path(context) / "Dockerfile").write_text(
            f"FROM scratch\nCOPY {binary.name} /{binary.name}\n"
            f'LABEL kuberl.binary-size="{binary.stat().st_size}"\n'
            f'USER 65532:65532\nENTRYPOINT ["/{binary.name}"]\n')
        engine.build(tag, context, timeout=300)
    return tag


def _label(tag: str, key: str) -> str:
    return engine.docker("image", "inspect", tag, "--format", f'{{{{index .Config.Labels "{key}"}}}}',
                         timeout=30).stdout.decode().strip()


def cluster_images() -> dict[str, str]:
    """The images the cluster itself needs (pause, CoreDNS, provisioner, helper), by role."""
    return {
        "pause": _binary_image(PAUSE_IMAGE, build.PAUSE.binary("pause")),
        "coredns": _binary_image(COREDNS_IMAGE, build.COREDNS.binary("coredns")),
        "local-path": _binary_image(LOCAL_PATH_IMAGE, build.LOCAL_PATH_PROVISIONER.binary("local-path-provisioner")),
        "helper": engine.ensure_base_image(),
    }


def mariadb_image(base: str) -> str:
    return engine.build(MARIADB_IMAGE, HERE / "images" / "mariadb", base, timeout=900)


def import_image(layout: Layout, tag: str) -> bool:
    """Copies a Docker image into the cluster's containerd unless that very image is there;
    returns whether it copied."""
    image_id = engine.docker("image", "inspect", tag, "--format", "{{.Id}}", timeout=30).stdout.decode().strip()
    marker = layout.images / "kuberl-imported" / tag.replace("/", "_").replace(":", "_")
    if marker.is_file() and marker.read_text() == image_id and _in_store(layout, tag):
        return False
    with subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE) as save:
        done = subprocess.run(ctr_argv(layout, "images", "import", "-"), stdin=save.stdout, capture_output=True,
                              timeout=900)
    if done.returncode != 0 or save.returncode != 0:
        raise RuntimeError(f"importing {tag} into the cluster's containerd failed: {done.stderr.decode(errors='replace')}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(image_id)
    return True


def _in_store(layout: Layout, tag: str) -> bool:
    names = ctr(layout, "images", "list", "--quiet", check=False).stdout.decode().split()
    return any(name == tag or name.endswith(f"/{tag}") or name == f"docker.io/library/{tag}" for name in names)


def drop_stale_images(layout: Layout) -> int:
    """Removes every image of the store that no lasting tag names: skaffold's per-build tags, and
    the ids the kubelet recorded for images since re-tagged. Kept, they filled the store (24 GB
    after ~70 test runs). Returns how many references went."""
    rows = [line.split()[:3] for line in ctr(layout, "images", "list").stdout.decode().splitlines()[1:]]
    lasting = {ref: digest for ref, _, digest in rows if not ref.startswith("sha256:") and not ONE_BUILD_TAG.search(ref)}
    stale = [ref for ref, _, digest in rows if ref not in lasting and digest not in lasting.values()]
    if stale:
        ctr(layout, "images", "rm", "--sync", *stale)
    for marker in (layout.images / "kuberl-imported").glob("*"):
        if ONE_BUILD_TAG.search(marker.name):
            marker.unlink()
    return len(stale)
