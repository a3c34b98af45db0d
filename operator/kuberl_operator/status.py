"""An RLExperiment's status: the lifecycle's status (kuberl.lifecycle, the same in every mode)
plus what only a cluster has: each role's pod selector, for the scale subresource."""

from __future__ import annotations

from typing import Any

from kuberl.lifecycle import Observation, compute_status
from kuberl_operator.builders import ROLES, Experiment, selector_string


def cluster_status(exp: Experiment, previous: dict[str, Any] | None, obs: Observation) -> dict[str, Any]:
    status = compute_status(exp.intent, previous, obs)
    for role in ROLES:
        status[role]["selector"] = selector_string(exp, role)
    return status


class StatusWrites:
    """The status each experiment was last patched to, and the resourceVersion it was computed
    from. The watch that feeds the operator's index may lag behind the operator's own patch; a
    visit that computed from the older status would write again (a condition's
    lastTransitionTime moved to a later second), so while the index still shows the version a
    patch was based on, the status last written stands in for it."""

    def __init__(self) -> None:
        self._written: dict[tuple[str, str], tuple[str | None, dict[str, Any]]] = {}

    @staticmethod
    def _key(body: dict[str, Any]) -> tuple[str, str]:
        return body["metadata"]["namespace"], body["metadata"]["name"]

    def latest(self, body: dict[str, Any]) -> dict[str, Any]:
        based_on, written = self._written.get(self._key(body), (None, {}))
        if based_on is not None and based_on == body["metadata"].get("resourceVersion"):
            return {**body["status"], **written}  # what a merge patch of `written` made of it
        return body["status"]

    def remember(self, body: dict[str, Any], written: dict[str, Any]) -> None:
        self._written[self._key(body)] = (body["metadata"].get("resourceVersion"), written)

    def forget(self, body: dict[str, Any]) -> None:
        self._written.pop(self._key(body), None)
