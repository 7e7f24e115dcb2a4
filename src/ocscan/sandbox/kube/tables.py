"""Server-side printing: ``meta.k8s.io/v1 Table`` answers for ``kubectl get``.

kubectl asks for ``application/json;as=Table;g=meta.k8s.io;v=v1`` and prints the columns the
server chooses. The columns here follow the API server's printers for the common kinds;
custom resources use their CRD's ``additionalPrinterColumns``; anything else gets Name and
Age.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.resources import ResourceType

Column = tuple[str, str, Callable[[JsonObject], Any]]  # (name, type, cell)


def accepts_table(accept: str | None) -> bool:
    """Whether the ``Accept`` header asks for a Table (kubectl's human-readable ``get``)."""
    return bool(accept) and "as=Table" in str(accept) and "g=meta.k8s.io" in str(accept)


def to_table(
    rtype: ResourceType,
    items: Sequence[JsonObject],
    list_meta: JsonObject,
) -> JsonObject:
    """A Table of ``items``, each row carrying its object's metadata."""
    columns = _columns(rtype)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [
            {"name": name, "type": kind, "format": "name" if name == "Name" else "",
             "description": "", "priority": 0}
            for name, kind, _ in columns
        ],
        "rows": [
            {
                "cells": [cell(obj) for _, _, cell in columns],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata", {}),
                },
            }
            for obj in items
        ],
    }  # fmt: skip


def human_duration(seconds: float) -> str:
    """Kubernetes' short age form: 5s, 3m20s, 47m, 5h12m, 2d3h, 200d, 3y."""
    s = max(int(seconds), 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    return f"{days // 365}y"


def _age_of(stamp: str | None) -> str:
    if not stamp:
        return "<unknown>"
    created = datetime.fromisoformat(stamp)  # RFC 3339, with or without fractions
    return human_duration((datetime.now(UTC) - created).total_seconds())


def _get(obj: JsonObject, path: str) -> Any:
    current: Any = obj
    for part in path.strip(".").split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return current


def _name(obj: JsonObject) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _age(obj: JsonObject) -> str:
    return _age_of(obj.get("metadata", {}).get("creationTimestamp"))


def _count(path: str) -> Callable[[JsonObject], int]:
    return lambda obj: int(_get(obj, path) or 0)


def _field(path: str, default: str = "<none>") -> Callable[[JsonObject], Any]:
    def cell(obj: JsonObject) -> Any:
        value = _get(obj, path)
        return default if value in (None, "") else value

    return cell


def _pod_status(pod: JsonObject) -> str:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    return str(reason)


def _pod_ready(pod: JsonObject) -> str:
    total = len((pod.get("spec") or {}).get("containers") or [])
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def _restarts(pod: JsonObject) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount") or 0) for c in statuses)


def _data_count(obj: JsonObject) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _ports(service: JsonObject) -> str:
    ports = (service.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


_NAME: Column = ("Name", "string", _name)
_AGE: Column = ("Age", "string", _age)
_BY_TYPE: dict[tuple[str, str], list[Column]] = {
    r.PODS.key: [_NAME, ("Ready", "string", _pod_ready), ("Status", "string", _pod_status),
                 ("Restarts", "integer", _restarts), _AGE],
    r.NAMESPACES.key: [_NAME, ("Status", "string", _field("status.phase")), _AGE],
    r.DEPLOYMENTS.key: [
        _NAME,
        ("Ready", "string",
         lambda o: f"{_count('status.readyReplicas')(o)}/{_count('spec.replicas')(o)}"),
        ("Up-to-date", "integer", _count("status.updatedReplicas")),
        ("Available", "integer", _count("status.availableReplicas")),
        _AGE,
    ],
    r.REPLICA_SETS.key: [_NAME, ("Desired", "integer", _count("spec.replicas")),
                         ("Current", "integer", _count("status.replicas")),
                         ("Ready", "integer", _count("status.readyReplicas")), _AGE],
    r.STATEFUL_SETS.key: [
        _NAME,
        ("Ready", "string",
         lambda o: f"{_count('status.readyReplicas')(o)}/{_count('spec.replicas')(o)}"),
        _AGE,
    ],
    r.DAEMON_SETS.key: [_NAME, ("Desired", "integer", _count("status.desiredNumberScheduled")),
                        ("Current", "integer", _count("status.currentNumberScheduled")),
                        ("Ready", "integer", _count("status.numberReady")), _AGE],
    r.JOBS.key: [
        _NAME,
        ("Completions", "string",
         lambda o: f"{_count('status.succeeded')(o)}/{_count('spec.completions')(o) or 1}"),
        _AGE,
    ],
    r.CRON_JOBS.key: [_NAME, ("Schedule", "string", _field("spec.schedule")),
                      ("Suspend", "boolean", _field("spec.suspend", "False")),
                      ("Active", "integer", lambda o: len(_get(o, "status.active") or [])),
                      ("Last Schedule", "string",
                       lambda o: _age_of(_get(o, "status.lastScheduleTime"))), _AGE],
    r.SECRETS.key: [_NAME, ("Type", "string", _field("type")),
                    ("Data", "integer", _data_count), _AGE],
    r.CONFIG_MAPS.key: [_NAME, ("Data", "integer", _data_count), _AGE],
    r.SERVICES.key: [_NAME, ("Type", "string", _field("spec.type")),
                     ("Cluster-IP", "string", _field("spec.clusterIP")),
                     ("External-IP", "string", lambda o: "<none>"),
                     ("Port(s)", "string", _ports), _AGE],
    r.EVENTS.key: [("Last Seen", "string", lambda o: _age_of(o.get("lastTimestamp"))),
                   ("Type", "string", _field("type")), ("Reason", "string", _field("reason")),
                   ("Object", "string",
                    lambda o: f"{str(_get(o, 'involvedObject.kind')).lower()}/"
                              f"{_get(o, 'involvedObject.name')}"),
                   ("Message", "string", _field("message", ""))],
    r.CUSTOM_RESOURCE_DEFINITIONS.key: [
        _NAME, ("Created At", "date", lambda o: o["metadata"].get("creationTimestamp"))],
}  # fmt: skip


def _columns(rtype: ResourceType) -> list[Column]:
    if rtype.key in _BY_TYPE:
        return _BY_TYPE[rtype.key]
    columns: list[Column] = [_NAME]
    for column in rtype.printer_columns:
        if int(column.get("priority") or 0) == 0:
            path = str(column.get("jsonPath", ""))
            columns.append(
                (str(column.get("name", "")), str(column.get("type", "string")), _field(path, ""))
            )
    return [*columns, _AGE]
