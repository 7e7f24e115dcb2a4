"""What an API request asks for: verb, resource, namespace, name and subresource from its path.

Pure: :func:`parse_request` maps an HTTP method and URL path to a :class:`RequestInfo`, the
way the API server's request-info resolver does (``/api/v1/namespaces/ns/pods/x/log`` is a
``get`` of ``pods/log`` named ``x`` in namespace ``ns``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

_TRUE = ("true", "1")


@dataclass(frozen=True)
class RequestInfo:
    """One request, resolved. ``is_resource`` is False for discovery, /version, /openapi..."""

    verb: str
    path: str
    is_resource: bool = False
    group: str = ""
    version: str = ""
    plural: str = ""
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def resource(self) -> str:
        """``pods`` or ``pods/log``: how RBAC rules and the request log name it."""
        return f"{self.plural}/{self.subresource}" if self.subresource else self.plural


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def parse_request(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """Resolve ``method`` and ``path`` (without the query string) into a :class:`RequestInfo`."""
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestInfo(verb=method.lower(), path=path)
    if not rest:
        return RequestInfo(verb=method.lower(), path=path, group=group, version=version)
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    if plural == "namespaces" and name is not None:
        namespace = name  # a namespace is "in" itself for authorization, as in Kubernetes
    verb = _verb(method, name, query)
    return RequestInfo(
        verb=verb,
        path=path,
        is_resource=True,
        group=group,
        version=version,
        plural=plural,
        namespace=namespace,
        name=name,
        subresource=subresource,
    )


def _verb(method: str, name: str | None, query: Mapping[str, str]) -> str:
    if method == "GET":
        if query.get("watch", "").lower() in _TRUE:
            return "watch"
        return "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return _VERBS.get(method, method.lower())
