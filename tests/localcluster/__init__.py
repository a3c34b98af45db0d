"""A local single-node Kubernetes cluster built from the official Go modules (see cluster.py)."""
