"""The kuberl operator: reconciles RLExperiment objects into the Kubernetes objects that run them."""
