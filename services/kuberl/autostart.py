"""Cluster mode: a role started with `--experiment FILE` (the operator's mounted ConfigMap)
serves that experiment from the start, and follows changes to the file without a restart."""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

from kuberl.config import ConfigError, Manifest, load_manifest

log = logging.getLogger(__name__)


def actor_index(node_name: str) -> int:
    """A stable per-pod index from its name: Deployment pods have no ordinal, and actors with
    the same index would step identical environments."""
    return zlib.crc32(node_name.encode()) % 100_000


class ExperimentFile:
    """Re-reads the manifest every `interval` seconds and calls on_change with each new version.

    A mounted ConfigMap is replaced atomically by the kubelet, so a read never sees half a file;
    an invalid version is logged and ignored (the last good one stays in force).
    """

    def __init__(self, path: Path, on_change: Callable[[Manifest], None], interval: float = 5.0):
        self.path = path
        self.on_change = on_change
        self.interval = interval
        self.current = load_manifest(path)  # the first read must succeed: nothing to serve otherwise
        self._text = path.read_text()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="experiment-file", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                text = self.path.read_text()
                if text == self._text:
                    continue
                experiment = load_manifest(self.path)
            except (OSError, ConfigError) as err:
                log.error("%s: ignoring the new version: %s", self.path, err)
                continue
            self._text = text
            if experiment.experiment_id != self.current.experiment_id:
                log.error("%s: the experiment changed identity (%s -> %s); ignored", self.path,
                          self.current.experiment_id, experiment.experiment_id)
                continue
            self.current = experiment
            log.info("%s: experiment config changed", self.path)
            self.on_change(experiment)

    def stop(self) -> None:
        self._stop.set()
