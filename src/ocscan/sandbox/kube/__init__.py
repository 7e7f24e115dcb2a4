"""A Kubernetes API emulator: the real REST protocol over HTTP, backed by an in-memory store.

:class:`~ocscan.sandbox.kube.store.ObjectStore` holds the objects with the API server's
semantics; :class:`~ocscan.sandbox.kube.server.KubeEmulator` serves it to real clients
(lightkube, kubectl) on 127.0.0.1.
"""
