"""The emulator's request log: one record per API request, for tests to count and inspect."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestRecord:
    """One request: what it asked, who asked, how it ended.

    ``resource`` is ``pods`` or ``pods/log`` ("" for discovery and other non-resource
    paths); ``code`` is the HTTP status, 0 when the connection was cut (a dropped watch, a
    client that gave up on a hung request).
    """

    method: str
    verb: str
    path: str
    query: str
    group: str
    resource: str
    namespace: str | None
    name: str | None
    code: int
    user: str
    duration: float


class RequestLog:
    """Thread-safe, append-only list of :class:`RequestRecord`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        """Record one request."""
        with self._lock:
            self._records.append(record)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def records(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        user: str | None = None,
        code: int | None = None,
    ) -> list[RequestRecord]:
        """Records matching every given filter (``resource`` as ``pods`` or ``pods/log``)."""
        with self._lock:
            records = list(self._records)
        return [
            rec
            for rec in records
            if (verb is None or rec.verb == verb)
            and (resource is None or rec.resource == resource)
            and (namespace is None or rec.namespace == namespace)
            and (name is None or rec.name == name)
            and (user is None or rec.user == user)
            and (code is None or rec.code == code)
        ]

    def count(
        self,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        user: str | None = None,
        code: int | None = None,
    ) -> int:
        """How many records match the filters (as for :meth:`records`)."""
        return len(
            self.records(
                verb=verb, resource=resource, namespace=namespace, name=name, user=user, code=code
            )
        )

    def verbs_by_resource(self, user: str | None = None) -> dict[str, set[str]]:
        """Resource -> the verbs used on it (by ``user``, when given)."""
        result: dict[str, set[str]] = {}
        for rec in self.records(user=user):
            if rec.resource:
                result.setdefault(rec.resource, set()).add(rec.verb)
        return result
