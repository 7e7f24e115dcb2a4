"""Discovery documents: /version, /api, /apis and the per group-version resource lists.

These are the legacy (unaggregated) forms; kubectl 1.32 asks for aggregated discovery first
and falls back to them when the answer is plain ``application/json``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ocscan.sandbox.kube.resources import ResourceRegistry, ResourceType

JsonObject = dict[str, Any]


def version_info(kubernetes_version: str) -> JsonObject:
    """The ``/version`` document of a server of ``kubernetes_version`` (``"1.32"``)."""
    major, minor = kubernetes_version.split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{major}.{minor}.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> JsonObject:
    """``/api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> JsonObject:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: ResourceRegistry) -> JsonObject:
    """``/apis``: every named group and its versions."""
    groups = [
        _group(name, versions)
        for name, versions in registry.group_versions().items()
        if name  # the core group is served at /api
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: ResourceRegistry, name: str) -> JsonObject | None:
    """``/apis/<group>``, or None for an unknown group."""
    versions = registry.group_versions().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def resource_list(registry: ResourceRegistry, group: str, version: str) -> JsonObject | None:
    """``/api/v1`` or ``/apis/<group>/<version>``: the served resources, or None."""
    types = [t for t in registry.all() if t.group == group and t.version == version]
    if not types:
        return None
    resources: list[JsonObject] = []
    for rtype in types:
        resources.append(_resource(rtype))
        for sub in rtype.subresources:
            verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
            resources.append(
                {
                    "name": f"{rtype.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": verbs,
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _resource(rtype: ResourceType) -> JsonObject:
    entry: JsonObject = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(rtype.verbs),
        "storageVersionHash": hashlib.sha256(
            f"{rtype.group}/{rtype.version}/{rtype.kind}".encode()
        ).hexdigest()[:11],
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    return entry
