"""The KEDA external scaler: scaling semantics, the gRPC service, and the command line."""
