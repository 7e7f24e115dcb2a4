"""Kubernetes adapters (lightkube) and the plain data they hand to the pure core."""
