"""What ocscan leaves in the sandbox's agent namespace: its scanner Jobs, pods and Secrets.

Import it as ``from scanner_objects import managed_objects`` (``tests/`` is on the path).
"""

from __future__ import annotations

import contextlib

from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.stack import Sandbox

AGENT_NAMESPACE = "ocscan"
MANAGED = "app.kubernetes.io/managed-by=ocscan"
KINDS = (("batch/v1", "Job"), ("v1", "Pod"), ("v1", "Secret"))


def managed_objects(sandbox: Sandbox) -> list[str]:
    """The ocscan-managed objects in the agent namespace, as ``Kind/name``."""
    assert sandbox.kube is not None
    store = sandbox.kube.store
    names = []
    for api_version, kind in KINDS:
        rtype = store.registry.for_kind(api_version, kind)
        assert rtype is not None
        for obj in store.list(rtype, AGENT_NAMESPACE, label_selector=MANAGED):
            names.append(f"{kind}/{obj['metadata']['name']}")
    return names


def remove_managed_objects(sandbox: Sandbox) -> None:
    """Delete them as an admin would (a Job's pod and Secret go with it)."""
    assert sandbox.kube is not None
    store = sandbox.kube.store
    for api_version, kind in KINDS:
        rtype = store.registry.for_kind(api_version, kind)
        assert rtype is not None
        for obj in store.list(rtype, AGENT_NAMESPACE, label_selector=MANAGED):
            with contextlib.suppress(ApiError):  # gone with its Job already
                name = obj["metadata"]["name"]
                store.delete(rtype, AGENT_NAMESPACE, name, grace_period_seconds=0)
