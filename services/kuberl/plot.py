"""The learning curve of a finished experiment as a PNG."""

from __future__ import annotations

import math
from pathlib import Path


def write_learning_curve(history: list[tuple[float, int, float, float]], path: Path, title: str) -> Path | None:
    """history rows: (seconds, env steps, mean training return, greedy eval return). None when
    matplotlib is not installed (`pip install kuberl[local]`)."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    steps = [row[1] for row in history]
    mean = [row[2] for row in history]
    evals = [(row[1], row[3]) for row in history if not math.isnan(row[3])]
    ax.plot(steps, mean, label="training return (mean of last 100 episodes)")
    if evals:
        ax.plot(*zip(*evals), "o-", markersize=3, label="greedy evaluation return")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
