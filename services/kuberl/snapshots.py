"""Snapshot files of per-experiment state: atomic `.npz` writes (temporary file, fsync, rename,
directory fsync), so a crash never leaves a torn file, and reads that never stop a role.

Each file says what it is and in which format (`format`, e.g. "kuberl.replay/2") and holds its
experiment's id (`experiment_id`); its name is a digest of the id, so any id fits any file
system. A file that cannot be read is moved aside (`NAME.corrupt`, or `NAME.unsupported` when a
newer kuberl wrote it) with a log line, and the role starts without it. Files written before
formats were named (percent-encoded id as the name, no `format`) are read as version 1.
Never pickled: loads use allow_pickle=False."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")

SUFFIX = ".npz"


def snapshot_name(experiment_id: str) -> str:
    return hashlib.sha256(experiment_id.encode()).hexdigest()[:32] + SUFFIX


def _fsync_directory(directory: Path) -> None:
    """Makes a rename in `directory` durable (the file's own fsync does not cover its name)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


@dataclass(frozen=True)
class SnapshotKind:
    """One role's snapshot files: their format's name and the version this code writes."""

    name: str  # "kuberl.replay", "kuberl.policy"
    version: int

    @property
    def format(self) -> str:
        return f"{self.name}/{self.version}"

    def save(self, data_dir: Path, experiment_id: str, arrays: dict[str, np.ndarray]) -> Path:
        path = data_dir / snapshot_name(experiment_id)
        save_npz(path, {"format": np.array(self.format), "experiment_id": np.array(experiment_id), **arrays})
        return path

    def remove(self, data_dir: Path, experiment_id: str) -> None:
        (data_dir / snapshot_name(experiment_id)).unlink(missing_ok=True)


class Unsupported(ValueError):
    """A snapshot of a format this code cannot read (a newer kuberl's, another role's)."""


@dataclass
class Snapshot:
    experiment_id: str
    version: int  # of the format it was written in
    arrays: dict[str, np.ndarray]
    path: Path


@dataclass
class SetAside:
    """Files moved out of the way at start, for logs, metrics and tests."""

    paths: list[Path] = field(default_factory=list)


def _read(path: Path, kind: SnapshotKind) -> Snapshot:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}  # reads (and checks) every member now
    written_as = str(arrays.pop("format")) if "format" in arrays else None
    if written_as is None:  # before formats were named: the id is the file's name
        return Snapshot(unquote(path.name.removesuffix(SUFFIX)), 1, arrays, path)
    name, _, version = written_as.rpartition("/")
    if name != kind.name or not version.isdigit() or int(version) > kind.version:
        raise Unsupported(f"format {written_as!r}; this kuberl reads {kind.name} up to version {kind.version}")
    if "experiment_id" not in arrays:
        raise ValueError("no experiment_id in the file")
    return Snapshot(str(arrays.pop("experiment_id")), int(version), arrays, path)


def read_snapshot(data_dir: Path, kind: SnapshotKind, experiment_id: str) -> Snapshot | None:
    """One experiment's snapshot, read without touching anything (for tools, not roles);
    None when there is none. Raises ValueError (Unsupported) for a file this kuberl cannot use."""
    path = data_dir / snapshot_name(experiment_id)
    return _read(path, kind) if path.is_file() else None


def load_snapshots(data_dir: Path, kind: SnapshotKind, build: Callable[[Snapshot], T],
                   aside: SetAside | None = None) -> Iterator[tuple[str, T]]:
    """(experiment id, build(snapshot)) of every snapshot in `data_dir` that reads and builds;
    the others are moved aside and logged. Leftover temporary files of a crashed write go."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for tmp in data_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for path in sorted(data_dir.glob(f"*{SUFFIX}")):
        try:
            snapshot = _read(path, kind)
            built = build(snapshot)
        except Exception as err:  # noqa: BLE001 - whatever is wrong with the file, the role must start
            set_aside(path, err, aside)
            continue
        yield snapshot.experiment_id, built


def set_aside(path: Path, err: Exception, aside: SetAside | None = None) -> Path:
    """Moves an unusable snapshot out of the way (never deleted: someone may want it)."""
    target = path.with_name(path.name + (".unsupported" if isinstance(err, Unsupported) else ".corrupt"))
    os.replace(path, target)
    log.error("snapshot %s cannot be used (%s: %s); moved to %s, starting without it",
              path, type(err).__name__, err, target.name)
    if aside is not None:
        aside.paths.append(target)
    return target
