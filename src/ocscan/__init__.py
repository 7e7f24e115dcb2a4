"""ocscan: operational container scanning for Kubernetes, private registries included."""

__version__ = "0.1.0"
