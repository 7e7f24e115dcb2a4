"""Kubeconfig documents pointing a client (kubectl, lightkube) at the emulator."""

from __future__ import annotations

import base64
from typing import Any

CONTEXT = "ocscan-sandbox"


def kubeconfig_document(
    server: str, token: str, namespace: str | None = None, ca_pem: bytes | None = None
) -> dict[str, Any]:
    """A one-context kubeconfig for ``server`` that authenticates with ``token`` (and trusts
    the CA ``ca_pem`` for an https server)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    context: dict[str, Any] = {"cluster": CONTEXT, "user": CONTEXT}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": context}],
        "current-context": CONTEXT,
        "preferences": {},
    }
