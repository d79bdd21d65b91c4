"""The KEDA external scaler: scaling semantics (strategies, fleet budget), its state and
sources, and the gRPC service. It imports nothing of the API, the worker or the command line."""
