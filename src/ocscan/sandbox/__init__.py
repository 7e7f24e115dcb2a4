"""A real local stack for tests and demos: registry, OCI images, Trivy DB, Trivy server
(and, in :mod:`ocscan.sandbox.kube`, the Kubernetes emulator).

Every part runs for real on 127.0.0.1 (the Debian ``docker-registry``, the ``trivy`` binary)
and every process it starts is stopped by its PID. Product code never imports this package;
only the CLI's ``sandbox`` command and the tests do.
"""
