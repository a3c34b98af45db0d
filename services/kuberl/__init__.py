"""kuberl: distributed reinforcement learning on Kubernetes."""

__version__ = "0.1.0"
