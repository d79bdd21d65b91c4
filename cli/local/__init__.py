"""The whole stack on one machine (`oasis-autoscaler up`): real processes, embedded defaults."""
