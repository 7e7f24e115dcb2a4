"""Helpers for JSON-shaped data (dicts, lists, strings, numbers, booleans, None)."""

from __future__ import annotations

from typing import Any, TypeVar, cast

JsonObject = dict[str, Any]
_T = TypeVar("_T")


def clone(value: _T) -> _T:
    """A deep copy of JSON-shaped ``value``; several times faster than ``copy.deepcopy``."""
    return cast(_T, _clone(value))


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def metadata(obj: JsonObject) -> JsonObject:
    """``obj["metadata"]``, created empty when missing or null."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta
