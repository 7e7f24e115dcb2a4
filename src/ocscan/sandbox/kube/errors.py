"""API errors as the Kubernetes API server reports them: a code, a reason and a Status body.

Constructors produce the real server's message forms (``pods "x" not found``), so clients
that match on reasons or messages behave as against a real cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ocscan.sandbox.errors import SandboxError
from ocscan.sandbox.kube.resources import ResourceType

PATCH_MEDIA_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


class ApiError(SandboxError):
    """A request the API rejects; :meth:`status` is the body the server sends."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{code} {reason}: {message}")

    def status(self) -> dict[str, Any]:
        """The ``meta/v1 Status`` object for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body

    # Constructors, one per reason the emulator reports.

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def not_found(cls, rtype: ResourceType, name: str) -> ApiError:
        return cls(
            404,
            "NotFound",
            f'{rtype.group_resource} "{name}" not found',
            _details(rtype, name),
        )

    @classmethod
    def namespace_not_found(cls, namespace: str) -> ApiError:
        return cls(
            404,
            "NotFound",
            f'namespaces "{namespace}" not found',
            {"name": namespace, "kind": "namespaces"},
        )

    @classmethod
    def already_exists(cls, rtype: ResourceType, name: str) -> ApiError:
        return cls(
            409,
            "AlreadyExists",
            f'{rtype.group_resource} "{name}" already exists',
            _details(rtype, name),
        )

    @classmethod
    def conflict(cls, rtype: ResourceType, name: str, why: str | None = None) -> ApiError:
        why = why or (
            "the object has been modified; please apply your changes to the latest version "
            "and try again"
        )
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rtype.group_resource} "{name}": {why}',
            _details(rtype, name),
        )

    @classmethod
    def resource_version_required(cls, rtype: ResourceType, name: str) -> ApiError:
        """422 for an update without ``metadata.resourceVersion`` of a type whose strategy
        allows no unconditional update (custom resources, Leases), in the API server's words."""
        field = "metadata.resourceVersion"
        message = "Invalid value: 0x0: must be specified for an update"
        details = _details(rtype, name)
        details["causes"] = [{"reason": "FieldValueInvalid", "message": message, "field": field}]
        text = f'{rtype.group_resource} "{name}" is invalid: {field}: {message}'
        return cls(422, "Invalid", text, details)

    @classmethod
    def invalid(
        cls, rtype: ResourceType, name: str, causes: list[tuple[str, str, str]]
    ) -> ApiError:
        """422 Invalid; ``causes`` are ``(reason, field, message)`` triples."""
        parts = [f"{field}: {message}" if field else message for _, field, message in causes]
        joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        details = _details(rtype, name, kind=rtype.kind)
        details["causes"] = [
            {"reason": reason, "message": message, "field": field}
            for reason, field, message in causes
        ]
        qualified = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
        return cls(422, "Invalid", f'{qualified} "{name}" is invalid: {joined}', details)

    @classmethod
    def forbidden(cls, rtype: ResourceType | None, name: str, reason: str) -> ApiError:
        what = rtype.group_resource if rtype else "resource"
        subject = f'{what} "{name}"' if name else what
        details = _details(rtype, name) if rtype else {}
        return cls(403, "Forbidden", f"{subject} is forbidden: {reason}", details)

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, "Expired", message)

    @classmethod
    def method_not_allowed(cls, message: str) -> ApiError:
        return cls(405, "MethodNotAllowed", message)

    @classmethod
    def unsupported_media_type(
        cls, content_type: str, accepted: Sequence[str] = PATCH_MEDIA_TYPES
    ) -> ApiError:
        return cls(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(accepted)}",
        )

    @classmethod
    def internal(cls, message: str) -> ApiError:
        return cls(500, "InternalError", message)


def _details(rtype: ResourceType, name: str, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind or rtype.plural}
    if rtype.group:
        details["group"] = rtype.group
    return details
