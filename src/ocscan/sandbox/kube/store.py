"""The emulator's object store: Kubernetes API semantics over in-memory objects, no HTTP.

The HTTP server is a thin layer over :class:`ObjectStore`; controllers, admission plugins and
the kubelet use the store directly, in the same process. Every method is thread-safe.

Objects are plain JSON-shaped dicts, exactly as the REST API carries them. Methods return deep
copies (callers may mutate them freely) and raise :class:`ApiError` with the real API server's
code, reason and message (``ApiError.code == 404``, ``.reason == "NotFound"``...).

Quick tour::

    from ocscan.sandbox.kube import resources as r
    store = ObjectStore()                              # namespaces default, kube-system... exist
    pod = store.create(r.PODS, "default", {"metadata": {"generateName": "web-"}, "spec": {...}})
    pod = store.get(r.PODS, "default", pod["metadata"]["name"])
    pods = store.list(r.PODS, "default", label_selector="app=web",
                      field_selector="spec.nodeName=n1")
    pod["status"] = {"phase": "Running"}
    store.update_status(r.PODS, "default", pod)        # only status changes
    store.patch(r.PODS, "default", name, PatchType.MERGE, {"metadata": {"labels": {"a": "b"}}})
    store.delete(r.PODS, "default", name)              # -> (last state, removed?)

Reacting to changes (controllers, the kubelet): either

* ``store.watch(r.PODS)`` -> :class:`Watch`; call ``next(timeout)`` from your own thread, as an
  informer does (``resource_version=None`` starts with ADDED events for existing objects), or
* ``unsubscribe = store.subscribe(callback, r.PODS)``: ``callback(event)`` runs in the writing
  thread, in resourceVersion order, with the store lock held. It must be quick and must not
  wait for other threads (enqueue work for your own thread instead). It may call the store;
  events its own writes cause are delivered after it returns, still in order.

Admission: ``store.add_admission(r.PODS, fn)`` calls ``fn(AdmissionRequest)`` on every create
(``operations=("CREATE", "UPDATE")`` for updates too), after the namespace check and before
name generation, defaulting and validation. ``fn`` mutates ``request.object`` in place and
raises :class:`ApiError` (e.g. ``ApiError.forbidden(...)``) to reject.

Logs: the kubelet registers ``register_log_provider(fn)``; the server streams
``fn(namespace, pod, container, follow)`` for ``GET .../pods/<name>/log``.

Semantics kept from the real API server: one global resourceVersion counter; uid,
creationTimestamp, generation and generateName; 409 AlreadyExists / Conflict (stale
resourceVersion); 404 for a missing namespace; 422 Invalid from the Kubernetes OpenAPI schema
(or a CRD's openAPIV3Schema); status subresource rules; no-op writes don't bump the
resourceVersion; Secret ``stringData``; finalizers and ``deletionTimestamp``; Foreground,
Background and Orphan propagation with ownerReference garbage collection (done synchronously,
before ``delete`` returns); namespace deletion removes its content; CRDs serve their custom
resources as soon as they are created. A bounded change history backs watch resume and
consistent paging; beyond it, resuming answers 410 Expired.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import queue
import secrets as _random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.crds import custom_resource_types, established_status
from ocscan.sandbox.kube.defaults import apply_defaults, reset_status, tracks_generation
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.jsondata import JsonObject, clone, metadata
from ocscan.sandbox.kube.patch import PatchType, apply_patch
from ocscan.sandbox.kube.resources import ResourceRegistry, ResourceType
from ocscan.sandbox.kube.schemas import KubernetesSchemas
from ocscan.sandbox.kube.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)
from ocscan.sandbox.kube.validation import SchemaValidator, check_metadata

__all__ = [
    "Admission",
    "AdmissionRequest",
    "ApiError",
    "EventType",
    "ListPage",
    "LogProvider",
    "ObjectStore",
    "PatchType",
    "Propagation",
    "ResourceType",
    "Subscriber",
    "Watch",
    "WatchEvent",
]

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
_NAMESPACE_FINALIZER = "kubernetes"
_CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class EventType(StrEnum):
    """Watch event types."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class Propagation(StrEnum):
    """``propagationPolicy`` of a delete."""

    FOREGROUND = "Foreground"
    BACKGROUND = "Background"
    ORPHAN = "Orphan"


@dataclass(frozen=True)
class WatchEvent:
    """One change: the object after it (for DELETED: its last state) and before it."""

    type: EventType
    resource: ResourceType
    object: JsonObject
    old_object: JsonObject | None
    resource_version: int


@dataclass
class AdmissionRequest:
    """What an admission plugin sees; it may mutate ``object`` in place."""

    operation: str
    resource: ResourceType
    namespace: str | None
    object: JsonObject
    old_object: JsonObject | None = None
    user: str | None = None


Admission = Callable[[AdmissionRequest], None]
Subscriber = Callable[[WatchEvent], None]
LogProvider = Callable[[str, str, str | None, bool], Iterator[bytes]]
"""``fn(namespace, pod, container, follow)`` -> chunks of the container's log."""


@dataclass(frozen=True)
class ListPage:
    """One page of a list: items, the list's resourceVersion and the continue token."""

    items: list[JsonObject]
    resource_version: str
    continue_token: str | None = None
    remaining_item_count: int | None = None


@dataclass(frozen=True)
class _Change:
    rv: int
    type: EventType
    key: tuple[str, str]
    namespace: str
    name: str
    object: JsonObject
    old: JsonObject | None


_Location = tuple[tuple[str, str], str, str]  # (storage key, namespace or "", name)
_Objects = list[JsonObject]  # `list` is shadowed by ObjectStore.list in the class body
_Hooks = list[Admission]


class Watch:
    """A stream of :class:`WatchEvent` for one resource; get events with :meth:`next`."""

    def __init__(
        self,
        store: ObjectStore,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> None:
        self.resource = rtype
        self._store = store
        self._namespace = namespace
        self._labels = labels
        self._fields = fields
        self._queue: queue.SimpleQueue[WatchEvent | None] = queue.SimpleQueue()
        self.closed = False

    def _selected(self, obj: JsonObject | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self._namespace is not None and meta.get("namespace") != self._namespace:
            return False
        return self._labels.matches(meta.get("labels")) and self._fields.matches(obj)

    def _offer(self, change: _Change) -> None:
        """Queue ``change`` as this watcher sees it (selector moves become ADDED/DELETED)."""
        if change.key != self.resource.key:
            return
        now, before = self._selected(change.object), self._selected(change.old)
        if change.type is EventType.MODIFIED:
            if now and not before:
                kind = EventType.ADDED
            elif before and not now:
                kind = EventType.DELETED
            elif now:
                kind = EventType.MODIFIED
            else:
                return
        elif not now:
            return
        else:
            kind = change.type
        self._queue.put(WatchEvent(kind, self.resource, change.object, change.old, change.rv))

    def next(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event, or None after ``timeout`` seconds or once the watch is closed.

        The event's objects are the store's own: treat them as read-only (clone to change).
        """
        if self.closed:
            return None
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self.closed = True
        return event

    def __iter__(self) -> Iterator[WatchEvent]:
        while (event := self.next()) is not None:
            yield event

    def close(self) -> None:
        """Stop the stream; a thread blocked in :meth:`next` returns None."""
        self._store._remove_watch(self)
        self._queue.put(None)


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps (seconds, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ObjectStore:
    """Kubernetes objects in memory, with the API server's semantics (see the module doc).

    ``history_limit`` bounds the change history kept for watch resume and paging; older
    resourceVersions answer 410 Expired. ``kubernetes_version`` picks the OpenAPI schema
    objects are validated against; ``validate=False`` skips schema validation.
    ``namespace_deletion_delay`` is how long a deleted namespace stays Terminating before its
    content is deleted (0: deleted before ``delete`` returns).
    """

    def __init__(
        self,
        *,
        history_limit: int = 10_000,
        kubernetes_version: str = "1.32",
        validate: bool = True,
        registry: ResourceRegistry | None = None,
        namespace_deletion_delay: float = 0.0,
    ) -> None:
        self.registry = registry or ResourceRegistry()
        self.history_limit = history_limit
        self.schemas = KubernetesSchemas(kubernetes_version)
        self.validator = SchemaValidator(kubernetes_version) if validate else None
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str], dict[tuple[str, str], JsonObject]] = {}
        self._by_uid: dict[str, _Location] = {}
        self._dependents: dict[str, set[_Location]] = {}
        self._rv = 0
        self._history: deque[_Change] = deque()
        self._compacted_rv = 0
        self._watches: list[Watch] = []
        self._subscribers: list[tuple[ResourceType | None, Subscriber]] = []
        self._admission: list[tuple[tuple[str, str], tuple[str, ...], Admission]] = []
        self._pending: deque[_Change] = deque()
        self._dispatching = False
        self._log_provider: LogProvider | None = None
        self.namespace_deletion_delay = namespace_deletion_delay
        self._ns_timers: dict[str, threading.Timer] = {}
        self._ns_cleaning: set[str] = set()
        #: Nodes a kubelet runs: their pods are deleted gracefully (see :meth:`delete`).
        self.kubelet_nodes: set[str] = set()
        for name in INITIAL_NAMESPACES:
            self.create(r.NAMESPACES, None, {"metadata": {"name": name}})

    # ---- public API: reads -------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The global resourceVersion: that of the latest write."""
        with self._lock:
            return self._rv

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> JsonObject:
        """The object ``name``; 404 NotFound when absent."""
        with self._lock:
            return clone(self._current(rtype, namespace, name))

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JsonObject]:
        """Every object selected, ordered by namespace and name (``namespace=None``: all)."""
        return self.list_page(rtype, namespace, label_selector, field_selector).items

    def list_page(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
        copy: bool = True,
    ) -> ListPage:
        """One page of a list, as ``GET`` with ``limit`` and ``continue`` serves it.

        A continue token lists the state at the first page's resourceVersion; once history
        has been compacted past it, 410 Expired. ``copy=False`` returns the store's own
        (read-only) objects, for serialising.
        """
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rtype)
        with self._lock:
            if continue_token:
                rv, start = self._decode_continue(continue_token)
                if rv < self._compacted_rv:
                    raise ApiError.gone(
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter, "
                        "or use the continue token in this response to retrieve the remainder "
                        "of the results. Continuing with the provided token results in an "
                        "inconsistent list - objects that were created, modified, or deleted "
                        "between the time the first chunk was returned and now may show up in "
                        "the list."
                    )
                snapshot = self._snapshot(rtype.key, rv)
            else:
                rv, start = self._rv, None
                snapshot = self._objects.get(rtype.key, {})
            keys = sorted(k for k in snapshot if namespace is None or k[0] == namespace)
            if start is not None:
                keys = keys[bisect.bisect_right(keys, start) :]
            unfiltered = labels.empty and fields.empty
            selected: list[tuple[tuple[str, str], JsonObject]] = []
            for key in keys:
                obj = snapshot[key]
                if unfiltered or (
                    labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)
                ):
                    selected.append((key, obj))
                    if limit and limit > 0 and len(selected) > limit:
                        break  # a page costs its own size, not the rest of the list
        token = remaining = None
        if limit and limit > 0 and len(selected) > limit:
            # As the API server: the remaining count only when no selector hides items.
            remaining = len(keys) - limit if unfiltered else None
            selected = selected[:limit]
            token = self._encode_continue(rv, selected[-1][0])
        items = [clone(o) if copy else o for _, o in selected]
        return ListPage(items, str(rv), token, remaining)

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Watch:
        """Start a watch, with the real semantics of ``resourceVersion``.

        None, ``""`` or ``"0"``: ADDED events for every existing object first, then changes.
        Otherwise the changes after that resourceVersion; 410 Expired when the history no
        longer reaches back to it.
        """
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rtype)
        watch = Watch(self, rtype, namespace, labels, fields)
        with self._lock:
            if resource_version in (None, "", "0"):
                for key in sorted(self._objects.get(rtype.key, {})):
                    obj = self._objects[rtype.key][key]
                    rv = int(obj["metadata"]["resourceVersion"])
                    watch._offer(_Change(rv, EventType.ADDED, rtype.key, *key, obj, None))
            else:
                since = self._parse_rv(resource_version)
                if since < self._compacted_rv:
                    raise ApiError.gone(
                        f"too old resource version: {since} ({self._compacted_rv + 1})"
                    )
                for change in self._history:
                    if change.rv > since:
                        watch._offer(change)
            self._watches.append(watch)
        return watch

    # ---- public API: writes -------------------------------------------------------------

    def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        obj: JsonObject,
        *,
        strict: bool = False,
        dry_run: bool = False,
        user: str | None = None,
    ) -> JsonObject:
        """Create ``obj``; returns it as stored (name, uid, resourceVersion... filled in).

        ``strict`` rejects unknown fields (``fieldValidation=Strict``).
        """
        with self._lock:
            obj = clone(obj)
            self._check_type_fields(rtype, obj)
            meta = metadata(obj)
            namespace = self._resolve_namespace(rtype, namespace, meta)
            if namespace is not None:
                self._check_namespace_open(rtype, namespace, meta.get("name") or "")
            for hook in self._hooks(rtype, "CREATE"):
                hook(AdmissionRequest("CREATE", rtype, namespace, obj, None, user))
                meta = metadata(obj)
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError.invalid(
                        rtype,
                        "",
                        [
                            (
                                "FieldValueRequired",
                                "metadata.name",
                                "Required value: name or generateName is required",
                            )
                        ],
                    )
                meta["name"] = self._generate_name(rtype, namespace, meta["generateName"])
            name = meta["name"]
            if (namespace or "", name) in self._objects.get(rtype.key, {}):
                raise ApiError.already_exists(rtype, name)
            for system_field in (
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ):
                meta.pop(system_field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if tracks_generation(rtype):
                meta["generation"] = 1
            if rtype.has_status:
                reset_status(rtype, obj)
            apply_defaults(rtype, obj, None)
            self._merge_string_data(rtype, obj)
            if rtype == r.CUSTOM_RESOURCE_DEFINITIONS:
                obj["status"] = established_status(obj)
            self._validate(rtype, obj, strict)
            if dry_run:
                meta.pop("uid", None)
                return obj
            self._write(rtype, EventType.ADDED, obj, None)
            if rtype == r.CUSTOM_RESOURCE_DEFINITIONS:
                self._serve_crd(obj)
            self._dispatch()
            return clone(obj)

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        obj: JsonObject,
        *,
        strict: bool = False,
        dry_run: bool = False,
        user: str | None = None,
    ) -> JsonObject:
        """Replace the object named in ``obj`` (PUT). Its status is kept for types with a
        status subresource. A ``metadata.resourceVersion`` other than the stored one is a
        409 Conflict; none means an unconditional update."""
        return self._replace(
            rtype, namespace, obj, status_only=False, strict=strict, dry_run=dry_run, user=user
        )

    def update_status(
        self,
        rtype: ResourceType,
        namespace: str | None,
        obj: JsonObject,
        *,
        dry_run: bool = False,
        user: str | None = None,
    ) -> JsonObject:
        """Replace only ``status`` of the object named in ``obj`` (PUT ``/status``)."""
        if not rtype.has_status:
            raise ApiError.not_found(rtype, metadata(obj).get("name", ""))
        return self._replace(
            rtype, namespace, obj, status_only=True, strict=False, dry_run=dry_run, user=user
        )

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: PatchType | str,
        patch: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
        user: str | None = None,
        field_manager: str | None = None,
    ) -> JsonObject:
        """Apply a JSON, merge, strategic merge or apply patch (``subresource="status"``:
        only the status changes). A server-side apply patch of a missing object creates it."""
        patch_type = PatchType(patch_type)
        if subresource not in (None, "status") or (subresource and not rtype.has_status):
            raise ApiError.not_found(rtype, name)
        with self._lock:
            key = (self._scope(rtype, namespace) or "", name)
            current = self._objects.get(rtype.key, {}).get(key)
            if current is None:
                if patch_type is PatchType.APPLY and subresource is None:
                    if not isinstance(patch, dict):
                        raise ApiError.bad_request("apply patch must be an object")
                    return self.create(
                        rtype, namespace, patch, strict=strict, dry_run=dry_run, user=user
                    )
                raise ApiError.not_found(rtype, name)
            patched = apply_patch(rtype, current, patch_type, patch, self.schemas)
            if not isinstance(patched, dict):
                raise ApiError.bad_request("the patch does not produce an object")
            meta = metadata(patched)
            if meta.get("name", name) != name:
                raise ApiError.bad_request(
                    f"the name of the object ({meta.get('name')}) does not match the name on "
                    f"the URL ({name})"
                )
            meta["name"] = name
            if patch_type is PatchType.APPLY:
                meta.pop("resourceVersion", None)
            return self._replace(
                rtype,
                namespace,
                patched,
                status_only=subresource == "status",
                strict=strict,
                dry_run=dry_run,
                user=user,
            )

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: Propagation | str | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        dry_run: bool = False,
        grace_period_seconds: int | None = None,
    ) -> tuple[JsonObject, bool]:
        """Delete ``name``: ``(its last state, whether it is gone)``.

        A pod on one of :attr:`kubelet_nodes` that has not finished is deleted gracefully
        (``grace_period_seconds``, else its ``terminationGracePeriodSeconds``): it gets
        ``deletionTimestamp`` and stays until that kubelet removes it with grace 0.

        With finalizers (or Foreground/Orphan propagation) the object stays, marked with
        ``deletionTimestamp``, until the last finalizer is removed. ``uid`` and
        ``resource_version`` are preconditions (409 Conflict when they differ). Without a
        ``propagation``, Jobs orphan their pods and everything else is Background, as in
        the API server.
        Dependents (by ownerReference uid) are garbage-collected before this returns.
        """
        if propagation:
            policy = Propagation(propagation)
        else:  # the API's defaults: batch/v1 Jobs orphan their pods (strategy.go)
            policy = Propagation.ORPHAN if rtype == r.JOBS else Propagation.BACKGROUND
        with self._lock:
            current = self._current(rtype, namespace, name)
            meta = current["metadata"]
            if uid is not None and uid != meta["uid"]:
                raise ApiError.conflict(
                    rtype,
                    name,
                    f"Precondition failed: UID in precondition: "
                    f"{uid}, UID in object meta: {meta['uid']}",
                )
            if resource_version is not None and resource_version != meta["resourceVersion"]:
                raise ApiError.conflict(
                    rtype,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {resource_version}, "
                    f"ResourceVersion in object meta: {meta['resourceVersion']}",
                )
            if rtype == r.NAMESPACES and name in _UNDELETABLE_NAMESPACES:
                raise ApiError.forbidden(rtype, name, "this namespace may not be deleted")
            if dry_run:
                return clone(current), False
            if rtype == r.PODS and (deferred := self._defer_pod(current, grace_period_seconds)):
                self._dispatch()
                return clone(deferred), False
            result, gone = self._delete(rtype, current, policy)
            self._dispatch()
            return clone(result), gone

    def delete_collection(
        self,
        rtype: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        propagation: Propagation | str | None = None,
    ) -> _Objects:
        """Delete every selected object; returns their last states."""
        with self._lock:
            deleted = []
            for obj in self.list(rtype, namespace, label_selector, field_selector):
                meta = obj["metadata"]
                try:
                    result, _ = self.delete(
                        rtype, meta.get("namespace"), meta["name"], propagation=propagation
                    )
                except ApiError as error:
                    if error.code != 404:  # already collected as someone's dependent
                        raise
                    continue
                deleted.append(result)
            return deleted

    # ---- public API: hooks --------------------------------------------------------------

    def subscribe(
        self, callback: Subscriber, rtype: ResourceType | None = None
    ) -> Callable[[], None]:
        """Call ``callback(event)`` on every change (of ``rtype`` only, when given).

        Returns the function that unsubscribes. See the module doc for the threading rules.
        """
        entry = (rtype, callback)
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def add_admission(
        self,
        rtype: ResourceType,
        fn: Admission,
        operations: Iterable[str] = ("CREATE",),
    ) -> None:
        """Run ``fn`` on writes of ``rtype`` (create only, unless ``operations`` says)."""
        with self._lock:
            self._admission.append((rtype.key, tuple(operations), fn))

    def register_log_provider(self, fn: LogProvider) -> None:
        """Serve pod logs from ``fn(namespace, pod, container, follow)``."""
        self._log_provider = fn

    @property
    def log_provider(self) -> LogProvider | None:
        """The registered log provider, if any."""
        return self._log_provider

    def compact(self) -> None:
        """Drop the whole change history (as etcd compaction does): older resourceVersions
        now answer 410 Expired to watches and continue tokens."""
        with self._lock:
            self._history.clear()
            self._compacted_rv = self._rv

    # ---- internals: lookups ---------------------------------------------------------------

    def _scope(self, rtype: ResourceType, namespace: str | None) -> str | None:
        return namespace if rtype.namespaced else None

    def _current(self, rtype: ResourceType, namespace: str | None, name: str) -> JsonObject:
        obj = self._objects.get(rtype.key, {}).get((self._scope(rtype, namespace) or "", name))
        if obj is None:
            raise ApiError.not_found(rtype, name)
        return obj

    def _by_location(self, location: _Location) -> JsonObject | None:
        key, namespace, name = location
        return self._objects.get(key, {}).get((namespace, name))

    def _type_of(self, key: tuple[str, str], obj: JsonObject) -> ResourceType:
        rtype = self.registry.for_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rtype is None or rtype.key != key:
            for candidate in self.registry.all():
                if candidate.key == key:
                    return candidate
            raise ApiError.internal(f"no served type for {key}")
        return rtype

    def _hooks(self, rtype: ResourceType, operation: str) -> _Hooks:
        return [fn for key, ops, fn in self._admission if key == rtype.key and operation in ops]

    @staticmethod
    def _parse_rv(value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise ApiError.bad_request(f'invalid resource version "{value}"') from None

    # ---- internals: write pipeline --------------------------------------------------------

    def _check_type_fields(self, rtype: ResourceType, obj: JsonObject) -> None:
        api_version, kind = obj.setdefault("apiVersion", rtype.api_version), obj.get("kind")
        obj.setdefault("kind", rtype.kind)
        if (kind and kind != rtype.kind) or r.split_api_version(api_version)[0] != rtype.group:
            raise ApiError.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.api_version})"
                if kind == rtype.kind or not kind
                else f'{kind} in version "{r.split_api_version(api_version)[1]}" cannot be '
                f"handled as a {rtype.kind}: the kind in the data ({kind}) does not match the "
                f"expected kind ({rtype.kind})"
            )
        obj["apiVersion"] = rtype.api_version

    def _resolve_namespace(
        self, rtype: ResourceType, namespace: str | None, meta: JsonObject
    ) -> str | None:
        if not rtype.namespaced:
            meta.pop("namespace", None)
            return None
        given = meta.get("namespace")
        if namespace is None:
            namespace = given
        if not namespace:
            raise ApiError.bad_request("an empty namespace may not be set during creation")
        if given and given != namespace:
            raise ApiError.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        meta["namespace"] = namespace
        return str(namespace)

    def _check_namespace_open(self, rtype: ResourceType, namespace: str, name: str) -> None:
        ns = self._objects.get(r.NAMESPACES.key, {}).get(("", namespace))
        if ns is None:
            raise ApiError.namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError.forbidden(
                rtype,
                name,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _generate_name(self, rtype: ResourceType, namespace: str | None, prefix: str) -> str:
        existing = self._objects.get(rtype.key, {})
        while True:
            suffix = "".join(_random.choice(_GENERATE_ALPHABET) for _ in range(5))
            name = prefix[:58] + suffix
            if (namespace or "", name) not in existing:
                return name

    @staticmethod
    def _merge_string_data(rtype: ResourceType, obj: JsonObject) -> None:
        if rtype != r.SECRETS:
            return
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.get("data") or {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data

    def _validate(self, rtype: ResourceType, obj: JsonObject, strict: bool) -> None:
        name = obj["metadata"].get("name", "")
        causes = check_metadata(rtype, obj)
        if not causes and self.validator is not None:
            causes = self.validator.validate(rtype, obj, strict)
        if causes:
            raise ApiError.invalid(rtype, name, causes)

    def _replace(
        self,
        rtype: ResourceType,
        namespace: str | None,
        obj: JsonObject,
        *,
        status_only: bool,
        strict: bool,
        dry_run: bool,
        user: str | None,
    ) -> JsonObject:
        with self._lock:
            new = clone(obj)
            self._check_type_fields(rtype, new)
            meta = metadata(new)
            name = meta.get("name") or ""
            old = self._current(rtype, namespace, name)
            old_meta = old["metadata"]
            rv = meta.get("resourceVersion")
            if rv and rv != old_meta["resourceVersion"]:
                raise ApiError.conflict(rtype, name)
            if status_only:
                new = dict(clone(old), status=new.get("status"))
                if new["status"] is None:
                    del new["status"]
                meta = new["metadata"]
            else:
                if rtype.has_status:
                    new.pop("status", None)
                    if "status" in old:
                        new["status"] = clone(old["status"])
                for kept in (
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "namespace",
                ):
                    if kept in old_meta:
                        meta[kept] = old_meta[kept]
                    else:
                        meta.pop(kept, None)
                for hook in self._hooks(rtype, "UPDATE"):
                    hook(AdmissionRequest("UPDATE", rtype, namespace, new, clone(old), user))
                apply_defaults(rtype, new, old)
                self._merge_string_data(rtype, new)
                if _spec_of(new) != _spec_of(old) and tracks_generation(rtype):
                    meta["generation"] = int(old_meta.get("generation", 1)) + 1
                if old_meta.get("deletionTimestamp"):
                    _forbid_new_finalizers(rtype, name, old_meta, meta)
            if rtype == r.CUSTOM_RESOURCE_DEFINITIONS and not status_only:
                new["status"] = established_status(new)
            self._validate(rtype, new, strict)
            meta["resourceVersion"] = old_meta["resourceVersion"]
            if new == old or dry_run:
                return clone(new)
            self._write(rtype, EventType.MODIFIED, new, old)
            if rtype == r.CUSTOM_RESOURCE_DEFINITIONS:
                self._serve_crd(new)
            if meta.get("deletionTimestamp"):
                self._process_deleting(rtype, new)
            self._dispatch()
            return clone(
                self._objects.get(rtype.key, {}).get((meta.get("namespace", ""), name), new)
            )

    def _write(
        self, rtype: ResourceType, kind: EventType, obj: JsonObject, old: JsonObject | None
    ) -> None:
        """Store (or, for DELETED, remove) ``obj`` with a new resourceVersion; record it."""
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        namespace, name = meta.get("namespace", ""), meta["name"]
        location: _Location = (rtype.key, namespace, name)
        bucket = self._objects.setdefault(rtype.key, {})
        if old is not None:
            self._unindex(location, old)
        if kind is EventType.DELETED:
            bucket.pop((namespace, name), None)
        else:
            bucket[(namespace, name)] = obj
            self._index(location, obj)
        change = _Change(self._rv, kind, rtype.key, namespace, name, obj, old)
        self._history.append(change)
        while len(self._history) > self.history_limit:
            self._compacted_rv = self._history.popleft().rv
        self._pending.append(change)

    def _index(self, location: _Location, obj: JsonObject) -> None:
        meta = obj["metadata"]
        self._by_uid[meta["uid"]] = location
        for ref in meta.get("ownerReferences") or []:
            self._dependents.setdefault(ref.get("uid", ""), set()).add(location)

    def _unindex(self, location: _Location, obj: JsonObject) -> None:
        meta = obj["metadata"]
        self._by_uid.pop(meta["uid"], None)
        for ref in meta.get("ownerReferences") or []:
            dependents = self._dependents.get(ref.get("uid", ""))
            if dependents is not None:
                dependents.discard(location)
                if not dependents:
                    del self._dependents[ref.get("uid", "")]

    def _dispatch(self) -> None:
        """Deliver pending changes in order; nested writes by subscribers queue behind."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                change = self._pending.popleft()
                for watch in list(self._watches):
                    watch._offer(change)
                if not self._subscribers:
                    continue
                rtype = self._type_of(change.key, change.object)
                for wanted, callback in list(self._subscribers):
                    if wanted is None or wanted.key == change.key:
                        event = WatchEvent(
                            change.type, rtype, clone(change.object), clone(change.old), change.rv
                        )
                        callback(event)
        finally:
            self._dispatching = False

    def _remove_watch(self, watch: Watch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    # ---- internals: deletion and garbage collection ---------------------------------------

    def _delete(
        self, rtype: ResourceType, obj: JsonObject, policy: Propagation
    ) -> tuple[JsonObject, bool]:
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if policy is Propagation.FOREGROUND and FOREGROUND_FINALIZER not in finalizers:
            finalizers.append(FOREGROUND_FINALIZER)
        if policy is Propagation.ORPHAN and ORPHAN_FINALIZER not in finalizers:
            finalizers.append(ORPHAN_FINALIZER)
        if rtype == r.NAMESPACES or rtype == r.CUSTOM_RESOURCE_DEFINITIONS:
            finalizers.append(_NAMESPACE_FINALIZER if rtype == r.NAMESPACES else _CRD_FINALIZER)
        if finalizers or meta.get("deletionTimestamp"):
            if not meta.get("deletionTimestamp") or finalizers != meta.get("finalizers"):
                new = clone(obj)
                new_meta = new["metadata"]
                new_meta.setdefault("deletionTimestamp", now_rfc3339())
                new_meta.setdefault("deletionGracePeriodSeconds", 0)
                if finalizers != [_NAMESPACE_FINALIZER] and finalizers != [_CRD_FINALIZER]:
                    new_meta["finalizers"] = [
                        f for f in finalizers if f not in (_NAMESPACE_FINALIZER, _CRD_FINALIZER)
                    ]
                if rtype == r.NAMESPACES:
                    new.setdefault("status", {})["phase"] = "Terminating"
                self._write(rtype, EventType.MODIFIED, new, obj)
                obj = new
            return obj, self._process_deleting(rtype, obj)
        self._remove(rtype, obj, policy)
        return obj, True

    def _process_deleting(self, rtype: ResourceType, obj: JsonObject) -> bool:
        """Work the finalizers the API server itself owns; remove the object once none are
        left. Returns whether the object is gone."""
        meta = obj["metadata"]
        uid = meta["uid"]
        finalizers = list(meta.get("finalizers") or [])
        if ORPHAN_FINALIZER in finalizers:
            self._orphan_dependents(uid)
            finalizers.remove(ORPHAN_FINALIZER)
        if FOREGROUND_FINALIZER in finalizers:
            for location in sorted(self._dependents.get(uid, set())):
                dependent = self._by_location(location)
                if dependent is not None:
                    dtype = self._type_of(location[0], dependent)
                    self._delete(dtype, dependent, Propagation.FOREGROUND)
            if not self._dependents.get(uid):
                finalizers.remove(FOREGROUND_FINALIZER)
        if rtype == r.NAMESPACES:
            if self._namespace_cleanup_due(meta["name"]):
                self._empty_namespace(meta["name"])
            if self._namespace_has_content(meta["name"]) or meta["name"] in self._ns_timers:
                finalizers.append(_NAMESPACE_FINALIZER)
        if rtype == r.CUSTOM_RESOURCE_DEFINITIONS:
            self._drop_custom_resources(obj)
        current = self._by_location((rtype.key, meta.get("namespace", ""), meta["name"]))
        if current is None:
            return True
        if finalizers != list(current["metadata"].get("finalizers") or []) and (
            _NAMESPACE_FINALIZER not in finalizers
        ):
            new = clone(current)
            new["metadata"]["finalizers"] = finalizers
            if not finalizers:
                del new["metadata"]["finalizers"]
            self._write(rtype, EventType.MODIFIED, new, current)
            current = new
        if finalizers:
            return False
        self._remove(rtype, current, Propagation.BACKGROUND)
        return True

    def _remove(self, rtype: ResourceType, obj: JsonObject, policy: Propagation) -> None:
        """Remove ``obj`` for good, then collect what depended on it."""
        meta = obj["metadata"]
        final = clone(obj)
        self._write(rtype, EventType.DELETED, final, obj)
        uid = meta["uid"]
        if policy is Propagation.ORPHAN:
            self._orphan_dependents(uid)
        else:
            for location in sorted(self._dependents.get(uid, set())):
                dependent = self._by_location(location)
                if dependent is None:
                    continue
                if self._has_live_owner(dependent, uid):
                    self._drop_owner_ref(location, dependent, uid)
                else:
                    dtype = self._type_of(location[0], dependent)
                    self._delete(dtype, dependent, Propagation.BACKGROUND)
        for ref in meta.get("ownerReferences") or []:
            self._owner_lost_dependent(ref.get("uid", ""))
        namespace = meta.get("namespace")
        if namespace:
            ns = self._objects.get(r.NAMESPACES.key, {}).get(("", namespace))
            terminating = ns is not None and ns["metadata"].get("deletionTimestamp")
            idle = namespace not in self._ns_timers and not self._namespace_has_content(namespace)
            if ns is not None and terminating and idle:
                self._process_deleting(r.NAMESPACES, ns)
        if rtype == r.CUSTOM_RESOURCE_DEFINITIONS:
            spec = obj.get("spec") or {}
            self.registry.unregister(
                spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
            )

    def _defer_pod(self, pod: JsonObject, grace: int | None) -> JsonObject | None:
        """Graceful pod deletion (the API server's ``CheckGracefulDelete``): mark the pod
        ``deletionTimestamp`` + grace and keep it for its kubelet; None to delete now."""
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds") or 0)
        phase = (pod.get("status") or {}).get("phase")
        if grace <= 0 or spec.get("nodeName") not in self.kubelet_nodes:
            return None
        if phase in ("Succeeded", "Failed"):
            return None
        current = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and current is not None and current <= grace:
            return pod
        new = clone(pod)
        deadline = datetime.now(UTC) + timedelta(seconds=grace)
        new["metadata"]["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        self._write(r.PODS, EventType.MODIFIED, new, pod)
        return new

    def _has_live_owner(self, dependent: JsonObject, except_uid: str) -> bool:
        for ref in dependent["metadata"].get("ownerReferences") or []:
            uid = ref.get("uid", "")
            if uid != except_uid and uid in self._by_uid:
                return True
        return False

    def _orphan_dependents(self, uid: str) -> None:
        for location in sorted(self._dependents.get(uid, set())):
            dependent = self._by_location(location)
            if dependent is not None:
                self._drop_owner_ref(location, dependent, uid)

    def _drop_owner_ref(self, location: _Location, dependent: JsonObject, uid: str) -> None:
        new = clone(dependent)
        refs = [
            ref for ref in new["metadata"].get("ownerReferences") or [] if ref.get("uid") != uid
        ]
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        self._write(self._type_of(location[0], dependent), EventType.MODIFIED, new, dependent)

    def _owner_lost_dependent(self, owner_uid: str) -> None:
        """A dependent went away: finish a foreground deletion waiting for it."""
        location = self._by_uid.get(owner_uid)
        owner = self._by_location(location) if location is not None else None
        if location is None or owner is None or not owner["metadata"].get("deletionTimestamp"):
            return
        waiting = FOREGROUND_FINALIZER in (owner["metadata"].get("finalizers") or [])
        if waiting and not self._dependents.get(owner_uid):
            self._process_deleting(self._type_of(location[0], owner), owner)

    def _namespace_cleanup_due(self, namespace: str) -> bool:
        """Whether a terminating namespace's content goes now; otherwise schedule it.

        The namespace controller of a real cluster empties a namespace a little after its
        deletion, so ``kubectl delete -f`` can still delete the objects listed after the
        namespace: ``namespace_deletion_delay`` plays that part (0: at once).
        """
        if self.namespace_deletion_delay <= 0 or namespace in self._ns_cleaning:
            return True
        if namespace not in self._ns_timers:
            timer = threading.Timer(self.namespace_deletion_delay, self._clean_namespace,
                                    args=(namespace,))  # fmt: skip
            timer.daemon = True
            self._ns_timers[namespace] = timer
            timer.start()
        return False

    def _clean_namespace(self, namespace: str) -> None:
        with self._lock:
            self._ns_timers.pop(namespace, None)
            self._ns_cleaning.add(namespace)
            try:
                ns = self._objects.get(r.NAMESPACES.key, {}).get(("", namespace))
                if ns is not None and ns["metadata"].get("deletionTimestamp"):
                    self._process_deleting(r.NAMESPACES, ns)
            finally:
                self._ns_cleaning.discard(namespace)
            self._dispatch()

    def _namespace_has_content(self, namespace: str) -> bool:
        return any(key[0] == namespace for bucket in self._objects.values() for key in bucket)

    def _empty_namespace(self, namespace: str) -> None:
        for storage_key, bucket in list(self._objects.items()):
            for key in sorted(k for k in bucket if k[0] == namespace):
                obj = bucket.get(key)
                if obj is not None and not obj["metadata"].get("deletionTimestamp"):
                    self._delete(self._type_of(storage_key, obj), obj, Propagation.BACKGROUND)

    # ---- internals: custom resource definitions -------------------------------------------

    def _serve_crd(self, crd: JsonObject) -> None:
        spec = crd.get("spec") or {}
        self.registry.unregister(spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        if crd["metadata"].get("deletionTimestamp"):
            return
        for rtype in custom_resource_types(crd):
            self.registry.register(rtype)

    def _drop_custom_resources(self, crd: JsonObject) -> None:
        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        for obj in list(self._objects.get(key, {}).values()):
            if not obj["metadata"].get("deletionTimestamp"):
                self._delete(self._type_of(key, obj), obj, Propagation.BACKGROUND)

    # ---- internals: paging -----------------------------------------------------------------

    def _snapshot(self, key: tuple[str, str], rv: int) -> dict[tuple[str, str], JsonObject]:
        """The objects of ``key`` as they were at resourceVersion ``rv``."""
        snapshot = dict(self._objects.get(key, {}))
        for change in reversed(self._history):
            if change.rv <= rv:
                break
            if change.key != key:
                continue
            if change.old is None:
                snapshot.pop((change.namespace, change.name), None)
            else:
                snapshot[(change.namespace, change.name)] = change.old
        return snapshot

    @staticmethod
    def _encode_continue(rv: int, last: tuple[str, str]) -> str:
        start = f"{last[0]}/{last[1]}\u0000" if last[0] else f"{last[1]}\u0000"
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            rv = int(raw["rv"])
            start = str(raw["start"]).rstrip("\u0000")
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ApiError.bad_request(f"continue key is not valid: {token!r}") from None
        namespace, _, name = start.rpartition("/")
        return rv, (namespace, name)


def _spec_of(obj: JsonObject) -> JsonObject:
    """Everything but metadata and status: what ``metadata.generation`` counts changes of."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _forbid_new_finalizers(
    rtype: ResourceType, name: str, old_meta: JsonObject, meta: JsonObject
) -> None:
    """An object being deleted may lose finalizers, never gain them."""
    added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
    if added:
        message = (
            "Forbidden: no new finalizers can be added if the object is being deleted, found "
            f"new finalizers {sorted(added)!r}"
        )
        raise ApiError.invalid(
            rtype, name, [("FieldValueForbidden", "metadata.finalizers", message)]
        )
