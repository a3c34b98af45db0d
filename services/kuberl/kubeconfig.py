"""How kuberl's Kubernetes clients (the operator, the experiment API in cluster mode) log in."""

from __future__ import annotations

import os

from kubernetes import config


def load_kube_config() -> None:
    """In a pod: its service account; elsewhere: $KUBECONFIG as it is now (the client reads it
    once, at import), else ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
