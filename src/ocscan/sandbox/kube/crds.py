"""CustomResourceDefinitions: the resource types a CRD defines and the status it gets."""

from __future__ import annotations

from typing import Any

from ocscan.sandbox.kube.jsondata import JsonObject, clone
from ocscan.sandbox.kube.resources import ResourceType


def custom_resource_types(crd: JsonObject) -> list[ResourceType]:
    """One :class:`ResourceType` per served version of ``crd``."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {}
        subresources = version.get("subresources") or {}
        types.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version.get("name", ""),
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                has_status="status" in subresources,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                schema=schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return types


def established_status(crd: JsonObject) -> dict[str, Any]:
    """The status the API server gives an accepted CRD (NamesAccepted, Established)."""
    spec = crd.get("spec") or {}
    stamp = crd.get("metadata", {}).get("creationTimestamp", "")
    conditions = [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp,
        }
        for kind, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    stored = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
    return {
        "conditions": conditions,
        "acceptedNames": clone(spec.get("names") or {}),
        "storedVersions": stored,
    }
