"""Snapshot files of per-experiment state: exact file names for user-chosen experiment ids,
and atomic `.npz` writes (temporary file, fsync, rename), so a crash never leaves a torn file.
Never pickled: loads use allow_pickle=False."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

SUFFIX = ".npz"


def snapshot_name(experiment_id: str) -> str:
    """A file name for an experiment id; ids are user strings, so they are percent-encoded
    (no '/' survives, and the encoding is exactly reversible)."""
    return quote(experiment_id, safe="") + SUFFIX


def experiment_from_snapshot_name(name: str) -> str:
    return unquote(name.removesuffix(SUFFIX))


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
