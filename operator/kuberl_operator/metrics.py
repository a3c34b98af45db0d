"""The operator's Prometheus figures: its observation rounds and the experiments it sees."""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from kuberl.lifecycle import Phase, recorded_phase
from kuberl.prometheus import REGISTRY

VISITS = Counter("kuberl_operator_visits_total", "Observations of one experiment (status, children, TTL), by outcome",
                 ["outcome"], registry=REGISTRY)
VISIT_SECONDS = Histogram("kuberl_operator_visit_seconds", "Time one observation of one experiment took",
                          buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=REGISTRY)
RECONCILES = Counter("kuberl_operator_reconciles_total", "Spec changes handled (create, update, resume), by outcome",
                     ["outcome"], registry=REGISTRY)
EXPERIMENTS = Gauge("kuberl_operator_experiments", "RLExperiment objects the operator watches, by recorded phase",
                    ["phase"], registry=REGISTRY)


def count_phases(bodies: list[dict[str, Any]]) -> None:
    """Sets the per-phase gauge from one round's objects (every phase, 0 where none is in it)."""
    tally = Tally(recorded_phase(dict(b.get("status") or {})) for b in bodies)
    for phase in Phase:
        EXPERIMENTS.labels(phase.value).set(tally[phase])
