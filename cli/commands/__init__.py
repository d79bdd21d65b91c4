"""The subcommands of `oasis-autoscaler`, one module each."""
