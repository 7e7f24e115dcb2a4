"""OpenAPI v3 documents: the ``/openapi/v3`` index and one document per group-version.

kubectl reads them to decide whether the server validates fields itself (the PATCH
operation's ``fieldValidation`` parameter), and ``kubectl apply`` reads the schemas'
``x-kubernetes-patch-merge-key`` to build strategic merge patches. Built-in schemas come from
the definitions ``kubernetes-validate`` ships; custom resources' from their CRD.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.resources import ResourceType
from ocscan.sandbox.kube.schemas import KubernetesSchemas
from ocscan.sandbox.kube.store import ObjectStore

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


def _gv_path(rtype: ResourceType) -> str:
    return f"apis/{rtype.group}/{rtype.version}" if rtype.group else f"api/{rtype.version}"


def v3_index(store: ObjectStore) -> JsonObject:
    """``/openapi/v3``: where each group-version's document is, with a content hash."""
    paths: dict[str, Any] = {}
    for gv in sorted({_gv_path(t) for t in store.registry.all()}):
        document = v3_document(store, gv)
        digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest.upper()}"}
    return {"paths": paths}


def v3_document(store: ObjectStore, gv_path: str) -> JsonObject | None:
    """The OpenAPI v3 document of ``api/v1`` or ``apis/<group>/<version>``, or None."""
    types = [t for t in store.registry.all() if _gv_path(t) == gv_path]
    if not types:
        return None
    if not any(t.is_custom for t in types):
        return _builtin_document(store.schemas.version, gv_path, tuple(types))
    return _document(store.schemas, gv_path, types)


@functools.lru_cache(maxsize=64)
def _builtin_document(version: str, gv_path: str, types: tuple[ResourceType, ...]) -> JsonObject:
    return _document(KubernetesSchemas(version), gv_path, list(types))


def _document(schemas: KubernetesSchemas, gv_path: str, types: list[ResourceType]) -> JsonObject:
    definitions = schemas.definitions()
    wanted: list[str] = [_META + "Patch", _META + "Status", _META + "DeleteOptions"]
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for rtype in types:
        if rtype.is_custom:
            name = f"{_reverse_domain(rtype.group)}.{rtype.version}.{rtype.kind}"
            components[name] = _custom_schema(rtype)
            wanted.append(_META + "ObjectMeta")
        else:
            found = schemas.definition_name(rtype)
            if found is None:
                continue
            name = found
            wanted.append(name)
        paths.update(_paths(rtype, name))
    for name in _closure(definitions, wanted):
        components[name] = _v3_schema(definitions[name])
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{schemas.version}.0"},
        "paths": paths,
        "components": {"schemas": components},
    }


def _reverse_domain(group: str) -> str:
    return ".".join(reversed(group.split(".")))


def _closure(definitions: dict[str, Any], roots: list[str]) -> list[str]:
    """``roots`` and every definition they reference, transitively."""
    seen: dict[str, None] = {}
    pending = [name for name in roots if name in definitions]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen[name] = None
        pending.extend(ref for ref in _refs(definitions[name]) if ref not in seen)
    return list(seen)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = [ref.rpartition("/")[2]] if isinstance(ref, str) else []
        for value in node.values():
            found.extend(_refs(value))
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _v3_schema(node: Any) -> Any:
    """JSON Schema 2020-12 (as shipped) to OpenAPI 3.0: refs into components, no type lists."""
    if isinstance(node, list):
        return [_v3_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _v3_schema(value) for key, value in node.items()}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = "#/components/schemas/" + str(out["$ref"]).rpartition("/")[2]
    kind = out.get("type")
    if isinstance(kind, list):
        real = [k for k in kind if k != "null"]
        out["type"] = real[0] if real else "object"
    if isinstance(out.get("enum"), list):
        out["enum"] = [value for value in out["enum"] if value is not None]
    return out


def _custom_schema(rtype: ResourceType) -> JsonObject:
    schema = dict(rtype.schema or {"type": "object"})
    properties = dict(schema.get("properties") or {})
    properties["metadata"] = {"$ref": f"#/components/schemas/{_META}ObjectMeta"}
    schema["properties"] = properties
    schema["x-kubernetes-group-version-kind"] = [
        {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
    ]
    return schema


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(rtype: ResourceType, action: str, schema_name: str, **extra: Any) -> JsonObject:
    operation: JsonObject = {
        "operationId": f"{action}{rtype.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rtype.group,
            "version": rtype.version,
            "kind": rtype.kind,
        },
        "responses": {
            "200": {"content": {"application/json": {"schema": _ref(schema_name)}}},
            "401": {"description": "Unauthorized"},
        },
    }
    operation.update(extra)
    return operation


def _query(*names: str) -> list[JsonObject]:
    return [{"name": name, "in": "query", "schema": {"type": "string"}} for name in names]


def _paths(rtype: ResourceType, schema_name: str) -> dict[str, Any]:
    prefix = "/" + _gv_path(rtype)
    collection = (
        f"{prefix}/namespaces/{{namespace}}/{rtype.plural}"
        if rtype.namespaced
        else f"{prefix}/{rtype.plural}"
    )
    item = f"{collection}/{{name}}"
    write_params = _query("dryRun", "fieldManager", "fieldValidation")
    patch_types = [t for t in _PATCH_TYPES if not (rtype.is_custom and "strategic" in t)]
    patch_body = {
        "content": {t: {"schema": _ref(_META + "Patch")} for t in patch_types},
        "required": True,
    }
    body = {"content": {"*/*": {"schema": _ref(schema_name)}}, "required": True}
    paths: dict[str, Any] = {
        collection: {
            "get": _operation(rtype, "list", schema_name),
            "post": _operation(
                rtype, "post", schema_name, parameters=write_params, requestBody=body
            ),
            "delete": _operation(rtype, "deletecollection", _META + "Status"),
        },
        item: {
            "get": _operation(rtype, "get", schema_name),
            "put": _operation(rtype, "put", schema_name, parameters=write_params, requestBody=body),
            "patch": _operation(
                rtype,
                "patch",
                schema_name,
                parameters=[*write_params, *_query("force")],
                requestBody=patch_body,
            ),
            "delete": _operation(rtype, "delete", _META + "Status"),
        },
    }
    if rtype.has_status:
        paths[f"{item}/status"] = {
            "get": _operation(rtype, "get", schema_name),
            "put": _operation(rtype, "put", schema_name, parameters=write_params, requestBody=body),
            "patch": _operation(
                rtype, "patch", schema_name, parameters=write_params, requestBody=patch_body
            ),
        }
    if rtype.namespaced:
        paths[f"{prefix}/{rtype.plural}"] = {"get": _operation(rtype, "list", schema_name)}
    return paths
