"""Generated gRPC code for the kuberl.v1 contract (see protos/); never edit by hand."""
