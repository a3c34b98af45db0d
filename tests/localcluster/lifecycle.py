"""Bringing the whole local cluster up: binaries, images, processes, addons, each timed."""

from __future__ import annotations

import time

import yaml

from tests.docker import engine
from tests.localcluster import addons, build, cluster, images
from tests.localcluster.cluster import ClusterError, Layout


def apply(layout: Layout, documents: list[dict]) -> None:
    cluster.kubectl(layout, "apply", "--server-side", "--field-manager=kuberl-localcluster", "-f", "-",
                    input=yaml.safe_dump_all(documents).encode())


def up(layout: Layout | None = None, log=print) -> Layout:
    """A fresh cluster, ready for pods: node Ready, cluster DNS answering, default StorageClass."""
    layout = layout or Layout.default()
    reason = cluster.why_not_runnable()
    if reason:
        raise ClusterError(f"the local cluster cannot run here: {reason}")
    started = time.monotonic()
    for component in build.CLUSTER_COMPONENTS:
        build.build(component, log)
    log(f"[localcluster] binaries ready in {time.monotonic() - started:.0f}s")
    stage = time.monotonic()
    engine.ensure_engine()
    wanted = images.cluster_images()
    log(f"[localcluster] cluster images ready in {time.monotonic() - stage:.0f}s")
    cluster.down(layout, log=lambda *_: None)  # whatever an earlier cluster left behind
    stage = time.monotonic()
    cluster.start_control_plane_and_node(layout, wanted["pause"], log)
    for tag in wanted.values():
        images.import_image(layout, tag)
    log(f"[localcluster] dropped {images.drop_stale_images(layout)} stale image references")
    apply(layout, addons.coredns(wanted["coredns"])
          + addons.local_path_storage(wanted["local-path"], wanted["helper"], str(layout.volumes)))
    cluster.kubectl(layout, "wait", "--for=condition=Ready", f"node/{cluster.NODE_NAME}", "--timeout=120s",
                    timeout=150)
    for namespace, deployment in (("kube-system", "coredns"), ("local-path-storage", "local-path-provisioner")):
        done = cluster.kubectl(layout, "-n", namespace, "rollout", "status", f"deployment/{deployment}",
                               "--timeout=180s", check=False, timeout=200)
        if done.returncode != 0:
            pods = cluster.kubectl(layout, "-n", namespace, "describe", "pods", check=False).stdout.decode()
            raise ClusterError(f"{namespace}/{deployment} did not become available:\n{pods[-4000:]}")
    log(f"[localcluster] cluster up in {time.monotonic() - stage:.0f}s "
        f"(Kubernetes {build.KUBERNETES.version}); KUBECONFIG={layout.kubeconfig}")
    return layout


def ensure_up(layout: Layout | None = None, log=print) -> tuple[Layout, bool]:
    """The running local cluster, or a new one; True when this call started it."""
    layout = layout or Layout.default()
    if cluster.is_up(layout):
        return layout, False
    return up(layout, log), True
