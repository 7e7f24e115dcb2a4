"""The four PATCH flavours of the Kubernetes API.

* JSON patch (RFC 6902), by the ``jsonpatch`` library;
* JSON merge patch (RFC 7386);
* strategic merge patch: lists merge by the ``x-kubernetes-patch-merge-key`` the Kubernetes
  OpenAPI schema gives them (containers by name, volumeMounts by mountPath...), with the
  ``$patch``, ``$retainKeys``, ``$setElementOrder/`` and ``$deleteFromPrimitiveList/``
  directives ``kubectl apply`` sends. Custom resources don't support it (415), as in
  Kubernetes;
* server-side apply, approximated: the applied configuration is merged like a strategic merge
  patch (without field ownership).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import jsonpatch
import jsonpointer

from ocscan.sandbox.kube.errors import PATCH_MEDIA_TYPES, ApiError
from ocscan.sandbox.kube.jsondata import JsonObject, clone
from ocscan.sandbox.kube.resources import ResourceType
from ocscan.sandbox.kube.schemas import KubernetesSchemas


class PatchType(StrEnum):
    """PATCH content types."""

    JSON = "application/json-patch+json"
    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY = "application/apply-patch+yaml"


_DELETE = object()


def apply_patch(
    rtype: ResourceType,
    current: JsonObject,
    patch_type: PatchType,
    patch: Any,
    schemas: KubernetesSchemas,
) -> Any:
    """``current`` with ``patch`` applied (``current`` is left unchanged)."""
    if patch_type is PatchType.JSON:
        return json_patch(rtype, current, patch)
    if patch_type is PatchType.MERGE or (patch_type is PatchType.APPLY and rtype.is_custom):
        return merge_patch(current, patch)
    if rtype.is_custom:
        accepted = [t for t in PATCH_MEDIA_TYPES if t != PatchType.STRATEGIC]
        raise ApiError.unsupported_media_type(patch_type, accepted)
    name = schemas.definition_name(rtype)
    root = schemas.definitions().get(name) if name else None
    if not isinstance(patch, dict):
        raise ApiError.bad_request("a strategic merge patch must be a JSON object")
    return strategic_merge(schemas, root, current, patch)


def json_patch(rtype: ResourceType, current: JsonObject, patch: Any) -> Any:
    """RFC 6902; a malformed patch is a 400, an operation that fails a 422."""
    if not isinstance(patch, list):
        raise ApiError.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    try:
        return jsonpatch.apply_patch(current, patch)
    except jsonpatch.InvalidJsonPatch as error:
        raise ApiError.bad_request(f"invalid JSON patch: {error}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
        name = current.get("metadata", {}).get("name", "")
        raise ApiError(
            422,
            "Invalid",
            f'{rtype.group_resource} "{name}" is invalid: the server rejected our request due '
            f"to an error in our request: {error}",
        ) from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(
    schemas: KubernetesSchemas, schema: dict[str, Any] | None, original: Any, patch: Any
) -> Any:
    """Strategic merge of ``patch`` into ``original`` under ``schema`` (None: no merge keys,
    lists replace)."""
    if not isinstance(patch, dict):
        return clone(patch)
    schema = schemas.resolve(schema)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return _DELETE
    result: dict[str, Any] = clone(original) if isinstance(original, dict) else {}
    properties = (schema or {}).get("properties") or {}
    additional = (schema or {}).get("additionalProperties")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.partition("/")[2]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = (
            properties.get(key)
            if key in properties
            else (additional if isinstance(additional, dict) else None)
        )
        if isinstance(value, list):
            result[key] = _merge_list(schemas, sub, result.get(key), value)
        elif isinstance(value, dict) and "replace" in _strategy(sub):
            result[key] = {k: clone(v) for k, v in value.items() if k != "$patch"}
        else:
            merged = strategic_merge(schemas, sub, result.get(key), value)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(order, list):
            field = key.partition("/")[2]
            sub = schemas.resolve(properties.get(field)) if field in properties else None
            if isinstance(result.get(field), list):
                result[field] = _reorder(
                    result[field], order, (sub or {}).get("x-kubernetes-patch-merge-key")
                )
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(
    schemas: KubernetesSchemas, schema: dict[str, Any] | None, original: Any, patch: list[Any]
) -> list[Any]:
    strategy = _strategy(schema)
    merge_key = (schema or {}).get("x-kubernetes-patch-merge-key")
    if "merge" not in strategy or not isinstance(original, list):
        return [clone(item) for item in patch if not _is_directive(item)]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [clone(item) for item in patch if not _is_directive(item)]
    if merge_key is None:  # a set of primitives
        return [*clone(original), *(clone(i) for i in patch if i not in original)]
    item_schema = schemas.resolve((schema or {}).get("items"))
    result: list[Any] = clone(original)
    for item in patch:
        if not isinstance(item, dict):
            result.append(clone(item))
            continue
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(merge_key) == item.get(merge_key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        merged = strategic_merge(
            schemas, item_schema, result[index] if index is not None else {}, item
        )
        if index is None:
            result.append(merged)
        else:
            result[index] = merged
    return result


def _strategy(schema: dict[str, Any] | None) -> list[str]:
    return str((schema or {}).get("x-kubernetes-patch-strategy", "")).split(",")


def _is_directive(item: Any) -> bool:
    return isinstance(item, dict) and "$patch" in item and len(item) == 1


def _reorder(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    """Put ``items`` in the order ``$setElementOrder`` gives; items it omits keep their
    place after the ordered ones."""

    def identity(item: Any) -> Any:
        if merge_key and isinstance(item, dict):
            return item.get(merge_key)
        return item

    wanted = [identity(entry) for entry in order]
    ranked = sorted(
        (item for item in items if identity(item) in wanted),
        key=lambda item: wanted.index(identity(item)),
    )
    return ranked + [item for item in items if identity(item) not in wanted]
