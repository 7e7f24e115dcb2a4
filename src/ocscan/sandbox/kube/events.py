"""Kubernetes Events (``core/v1``), recorded the way controllers and the kubelet do.

A repeated event (same object, reason and message) bumps ``count`` and ``lastTimestamp``
of the existing Event instead of creating another one.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.store import ObjectStore

NORMAL = "Normal"
WARNING = "Warning"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_event(
    store: ObjectStore,
    obj: JsonObject,
    event_type: str,
    reason: str,
    message: str,
    component: str,
    host: str | None = None,
) -> None:
    """Record an Event about ``obj`` (best effort: a failure to record is not an error)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    digest = hashlib.sha256(
        f"{meta.get('uid')}\0{reason}\0{message}\0{component}".encode()
    ).hexdigest()[:16]
    name = f"{meta.get('name', '')}.{digest}"
    now = _now()
    with contextlib.suppress(ApiError):
        try:
            existing = store.get(r.EVENTS, namespace, name)
        except ApiError:
            source = {"component": component} | ({"host": host} if host else {})
            store.create(
                r.EVENTS,
                namespace,
                {
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {
                        "apiVersion": obj.get("apiVersion"),
                        "kind": obj.get("kind"),
                        "name": meta.get("name"),
                        "namespace": meta.get("namespace"),
                        "uid": meta.get("uid"),
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                    "reason": reason,
                    "message": message,
                    "type": event_type,
                    "source": source,
                    "reportingComponent": component,
                    "reportingInstance": host or "",
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                },
            )
            return
        existing["count"] = int(existing.get("count") or 1) + 1
        existing["lastTimestamp"] = now
        existing["metadata"].pop("resourceVersion", None)
        store.update(r.EVENTS, namespace, existing)
