"""Offline helpers for the Kubernetes tests: render the kustomizations with kubectl, validate objects strictly."""
