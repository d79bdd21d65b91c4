"""The `oasis-autoscaler` command line and the tools that are not services.

`commands/` holds one module per subcommand; beside it the tools they run: the local stack and its
KEDA stand-in (`local/`), the simulator (`simulate/`), the manifest generator (`manifests/`), the
model of KEDA they share (`keda/`), `planning` and the sub-task timeline (`subtasks/`). The services
(`api`, `worker`, `scaler`) never import this package.
"""
