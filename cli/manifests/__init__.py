"""A model's workers on Kubernetes: what they are made of, checked, and printed as manifests."""
