"""The Kubernetes OpenAPI definitions, as the ``kubernetes-validate`` package ships them.

One set per Kubernetes minor version, loaded once and shared: the validator checks objects
against them, strategic merge patch reads its list merge keys from them, and the server
derives its ``/openapi`` documents from them.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from ocscan.sandbox.errors import SandboxError
from ocscan.sandbox.kube.resources import ResourceType

_PACKAGE = "kubernetes_validate"
_ROOT = "kubernetes-json-schema"


def available_versions() -> list[str]:
    """Kubernetes minor versions (``"1.32"``) the installed package has schemas for."""
    root = resources.files(_PACKAGE).joinpath(_ROOT)
    found = set()
    for entry in root.iterdir():
        name = entry.name
        if name.startswith("v") and name.endswith("-local"):
            found.add(".".join(name[1:].split("-")[0].split(".")[:2]))
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


class KubernetesSchemas:
    """The OpenAPI definitions of one Kubernetes version (``"1.32"``), loaded on first use."""

    def __init__(self, version: str) -> None:
        if version not in available_versions():
            raise SandboxError(
                f"kubernetes-validate has no schemas for Kubernetes {version}; "
                f"available: {', '.join(available_versions())}"
            )
        self.version = version

    def definitions(self, strict: bool = False) -> dict[str, Any]:
        """Definition name -> JSON schema (``$ref``s point at ``#/$defs/<name>``).

        ``strict`` schemas forbid unknown fields.
        """
        return _load(self.version, strict)

    def definition_name(self, rtype: ResourceType) -> str | None:
        """The definition name of ``rtype``'s objects, if the schema has one."""
        return _kinds(self.version).get((rtype.group, rtype.version, rtype.kind))

    def resolve(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        """``schema`` with a top-level ``$ref`` followed (once per level)."""
        while schema is not None and "$ref" in schema:
            schema = self.definitions().get(schema["$ref"].rpartition("/")[2])
        return schema


@functools.cache
def _load(version: str, strict: bool) -> dict[str, Any]:
    folder = f"v{version}.0-local" + ("-strict" if strict else "")
    path = resources.files(_PACKAGE).joinpath(_ROOT, folder, "_definitions.json")
    document: dict[str, Any] = json.loads(path.read_text())
    definitions: dict[str, Any] = document["$defs"]
    return definitions


@functools.cache
def _kinds(version: str) -> dict[tuple[str, str, str], str]:
    kinds: dict[tuple[str, str, str], str] = {}
    for name, schema in _load(version, False).items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            key = (gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))
            # The same kind appears in several groups' definitions (meta/v1 Status...);
            # keep the definition whose name matches the kind.
            if key not in kinds or name.endswith("." + key[2]):
                kinds[key] = name
    return kinds
