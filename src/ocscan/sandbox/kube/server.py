"""The emulator's HTTP front: the Kubernetes REST API over the object store.

:class:`KubeEmulator` serves on 127.0.0.1 from a background thread (so an asyncio test or the
``sandbox up`` command keeps its own loop), one thread per connection, HTTP/1.1 keep-alive,
chunked streaming for watches and ``log?follow=true``. Each request is authenticated (bearer
token), authorized (optional RBAC), run through the injected faults, served, and recorded in
the request log.

    with KubeEmulator() as kube:
        kube.write_kubeconfig(tmp_path / "kubeconfig")
        kube.store.create(...)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn, Self
from urllib.parse import parse_qsl, urlsplit

import msgspec
import yaml

from ocscan.sandbox.kube import discovery, openapi, protobuf
from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.auth import ANONYMOUS, Identity, TokenAuthenticator
from ocscan.sandbox.kube.defaults import allows_unconditional_update
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.faults import Effects, FaultInjector
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.kubeconfig import kubeconfig_document
from ocscan.sandbox.kube.rbac import Attributes, RbacAuthorizer
from ocscan.sandbox.kube.requestlog import RequestLog, RequestRecord
from ocscan.sandbox.kube.resources import ResourceType
from ocscan.sandbox.kube.routing import RequestInfo, parse_request
from ocscan.sandbox.kube.store import LogProvider, ObjectStore, PatchType, Watch
from ocscan.sandbox.kube.tables import accepts_table, to_table
from ocscan.sandbox.lifecycle import StartsOnEnter
from ocscan.sandbox.registry import TlsFiles

LOOPBACK = "127.0.0.1"
_log = logging.getLogger(__name__)
_TRUE = ("true", "1")
_POLL = 0.2
_NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource", {})


class KubeEmulator(StartsOnEnter):
    """A Kubernetes API server emulator on ``http://127.0.0.1:<port>``.

    ``store``, ``faults``, ``request_log``, ``rbac`` and ``auth`` are the parts tests drive.
    ``history_limit`` bounds the change history (watch resume, paging); ``watch_timeout``
    is how long a watch without ``timeoutSeconds`` lasts; ``bookmark_interval`` spaces
    BOOKMARK events for watches that allow them; ``namespace_deletion_delay`` how long a
    deleted namespace stays Terminating before its content goes (as the namespace controller
    of a real cluster takes a moment). With ``tls`` (see ``ocscan.sandbox.registry.
    make_tls_files``) it serves HTTPS: kubectl only sends its bearer token over TLS, so tests
    of kubectl under another identity than anonymous need it.
    """

    def __init__(
        self,
        *,
        kubernetes_version: str = "1.32",
        history_limit: int = 10_000,
        validate: bool = True,
        host: str = LOOPBACK,
        port: int = 0,
        watch_timeout: float = 1800.0,
        bookmark_interval: float = 60.0,
        fault_seed: int = 0,
        namespace_deletion_delay: float = 1.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.kubernetes_version = kubernetes_version
        self.store = ObjectStore(
            history_limit=history_limit,
            kubernetes_version=kubernetes_version,
            validate=validate,
            namespace_deletion_delay=namespace_deletion_delay,
        )
        self.faults = FaultInjector(fault_seed)
        self.request_log = RequestLog()
        self.auth = TokenAuthenticator()
        self.rbac = RbacAuthorizer(self.store)
        self.watch_timeout = watch_timeout
        self.bookmark_interval = bookmark_interval
        self._host = host
        self._port = port
        self.tls = tls
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        self.stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.emulator = self
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            # the handshake happens in each connection's thread, not in the accept loop
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kube-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end streams, close connections, join the threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def port(self) -> int:
        """The port it listens on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` with TLS)."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    # ---- clients -----------------------------------------------------------------------------

    def write_kubeconfig(
        self, path: Path | str, token: str | None = None, namespace: str | None = None
    ) -> Path:
        """Write a kubeconfig for this server (mode 0600: it holds a token).

        ``token`` defaults to the admin token (group ``system:masters``); get others from
        ``auth.issue_user`` / ``auth.issue_service_account``.
        """
        path = Path(path)
        ca = self.tls.ca_file.read_bytes() if self.tls is not None else None
        document = kubeconfig_document(self.url, token or self.auth.admin_token, namespace, ca)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def register_log_provider(self, fn: LogProvider) -> None:
        """Serve ``pods/log`` from ``fn(namespace, pod, container, follow)``."""
        self.store.register_log_provider(fn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # listen() backlog. socketserver's 5 drops the SYNs of a client opening more connections
    # at once, which then wait a second to retry; Go's API server uses the system maximum.
    request_queue_size = 128
    emulator: KubeEmulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request or fails the TLS handshake is no server error.
        _log.debug("kube emulator: connection from %s failed", client_address, exc_info=True)

    def track(self, connection: socket.socket, active: bool) -> None:
        with self._connections_lock:
            if active:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection down, so idle keep-alive handlers return."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class _Call:
    """One resource request, resolved: what the verb handlers work from."""

    rtype: ResourceType
    info: RequestInfo
    namespace: str | None
    query: dict[str, str]
    body: bytes
    identity: Identity
    effects: Effects


class _Dropped(Exception):
    """The connection was cut on purpose (a dropped-watch fault) or by the client."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ocscan-kube-emulator"
    sys_version = ""
    timeout = 300
    server: _Server
    _recorded: bool
    _record: Callable[[int], None]

    # ---- plumbing ----------------------------------------------------------------------------

    def setup(self) -> None:
        # Headers and body go out in two writes: with Nagle's algorithm the body waits for
        # the client's delayed ACK (40 ms on Linux). Go's API server disables it too.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    @property
    def emulator(self) -> KubeEmulator:
        return self.server.emulator

    def _handle(self, method: str) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        info = parse_request(method, url.path, query)
        identity = ANONYMOUS
        code = 500

        # The record goes in just before the last bytes of the response, so a client that
        # has its answer always finds its request in the log.
        def record(sent: int) -> None:
            if self._recorded:
                return
            self._recorded = True
            self.emulator.request_log.append(
                RequestRecord(
                    method=method,
                    verb=info.verb,
                    path=url.path,
                    query=url.query,
                    group=info.group,
                    resource=info.resource,
                    namespace=info.namespace,
                    name=info.name,
                    code=sent,
                    user=identity.user,
                    duration=time.monotonic() - started,
                )
            )

        self._recorded = False
        self._record = record
        try:
            body = self._read_body()
            identity = self.emulator.auth.authenticate(self.headers.get("Authorization"))
            if info.is_resource:
                self.emulator.rbac.authorize(identity, _attributes(info))
            effects = self.emulator.faults.check(info)
            self._apply_faults(effects)
            route = partial(self._route, method, info, query, body, identity, effects)
            if effects.lose_answer:
                self._unanswered(route)
            code = route()
        except ApiError as error:
            code = error.code
            self._send_json(error.code, error.status(), error.headers)
        except _Dropped:
            code = 0
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            code = 0
            self.close_connection = True
        except Exception as error:  # a bug in the emulator: answer like an API server would
            _log.exception("kube emulator: %s %s failed", method, self.path)
            code = 500
            with contextlib.suppress(OSError):
                failure = ApiError.internal(f"Internal error occurred: {error}")
                self._send_json(500, failure.status())
        finally:
            record(code)

    def _unanswered(self, route: Callable[[], int]) -> NoReturn:
        """Carry out ``route``, discard its answer and cut the connection (logged as 0)."""
        wfile, self.wfile = self.wfile, io.BytesIO()
        record, self._record = self._record, lambda code: None
        try:
            route()
        except ApiError:
            pass  # refused: nothing took effect, but the client is not told either
        finally:
            self.wfile, self._record = wfile, record
        self.close_connection = True
        raise _Dropped

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> int:
        # msgspec: compact UTF-8 JSON, as the API server writes it, several times faster
        # than json.dumps on the megabytes of a large list.
        payload = msgspec.json.encode(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self._record(code)
        self.end_headers()
        self.wfile.write(payload)
        return code

    def _send_text(self, code: int, text: str) -> int:
        payload = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self._record(code)
        self.end_headers()
        self.wfile.write(payload)
        return code

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_stream(self) -> None:
        self._record(200)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                return True  # a client sends nothing mid-response but its goodbye
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except OSError:
            return True

    def _apply_faults(self, effects: Effects) -> None:
        if effects.delay:
            self.emulator.stopping.wait(effects.delay)
        if effects.hang is not None:
            deadline = time.monotonic() + effects.hang
            while time.monotonic() < deadline and not self.emulator.stopping.is_set():
                if self._client_gone():
                    raise _Dropped
                time.sleep(0.05)
            raise ApiError(
                504,
                "Timeout",
                "The server was unable to return a response in the "
                "time allotted, but may still be processing the request",
            )
        if effects.error is not None:
            raise effects.error

    # ---- routing -----------------------------------------------------------------------------

    def _route(
        self,
        method: str,
        info: RequestInfo,
        query: dict[str, str],
        body: bytes,
        identity: Identity,
        effects: Effects,
    ) -> int:
        if not info.is_resource:
            if method != "GET":
                raise _NOT_FOUND
            return self._non_resource(info)
        rtype = self.emulator.store.registry.get(info.group, info.version, info.plural)
        if rtype is None or (info.namespace and not rtype.namespaced and rtype != r.NAMESPACES):
            raise _NOT_FOUND
        namespace = info.namespace if rtype.namespaced else None
        if rtype == r.SELF_SUBJECT_ACCESS_REVIEWS:
            if info.verb != "create":
                raise ApiError.method_not_allowed(f"{info.verb} is not supported")
            return self._access_review(rtype, body, identity)
        handler = _VERB_HANDLERS.get(info.verb)
        if handler is None:
            raise ApiError.method_not_allowed(f"{method} is not supported")
        if info.subresource and info.subresource not in rtype.subresources:
            raise _NOT_FOUND
        return handler(self, _Call(rtype, info, namespace, query, body, identity, effects))

    def _non_resource(self, info: RequestInfo) -> int:
        emulator = self.emulator
        registry = emulator.store.registry
        path = info.path.rstrip("/") or "/"
        document: Any = None
        if path == "/version":
            document = discovery.version_info(emulator.kubernetes_version)
        elif path == "/api":
            document = discovery.api_versions(f"{LOOPBACK}:{emulator.port}")
        elif path == "/apis":
            document = discovery.api_group_list(registry)
        elif path.startswith("/apis/") and path.count("/") == 2:
            document = discovery.api_group(registry, path.split("/")[2])
        elif info.version:
            document = discovery.resource_list(registry, info.group, info.version)
        elif path in ("/healthz", "/livez", "/readyz"):
            return self._send_text(200, "ok")
        elif path == "/openapi/v3":
            document = openapi.v3_index(emulator.store)
        elif path.startswith("/openapi/v3/"):
            document = openapi.v3_document(emulator.store, path.removeprefix("/openapi/v3/"))
        if document is None:
            raise _NOT_FOUND
        return self._send_json(200, document)

    # ---- verbs -------------------------------------------------------------------------------

    def _get(self, call: _Call) -> int:
        rtype, info, namespace, query = call.rtype, call.info, call.namespace, call.query
        if info.subresource == "log":
            return self._log(rtype, info, namespace, query)
        obj = self.emulator.store.get(rtype, namespace, info.name or "")
        return self._send_object(200, rtype, obj)

    def _list(self, call: _Call) -> int:
        rtype, namespace, query = call.rtype, call.namespace, call.query
        limit = _int_param(query, "limit")
        page = self.emulator.store.list_page(
            rtype,
            namespace,
            query.get("labelSelector"),
            query.get("fieldSelector"),
            limit=limit,
            continue_token=query.get("continue") or None,
            copy=False,
        )
        meta: JsonObject = {"resourceVersion": page.resource_version}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if page.remaining_item_count is not None:
            meta["remainingItemCount"] = page.remaining_item_count
        items = [_presented(rtype, obj) for obj in page.items]
        if accepts_table(self.headers.get("Accept")):
            return self._send_json(200, to_table(rtype, items, meta))
        document = {
            "kind": rtype.list_kind,
            "apiVersion": rtype.api_version,
            "metadata": meta,
            "items": items,
        }
        return self._send_json(200, document)

    def _create(self, call: _Call) -> int:
        rtype, info, namespace, query = call.rtype, call.info, call.namespace, call.query
        if info.name is not None:
            raise ApiError.method_not_allowed(f"POST is not supported on {info.resource}")
        obj = _parse_object(call.body, self.headers.get("Content-Type"))
        created = self.emulator.store.create(
            rtype, namespace, obj, **_write_options(query, call.identity)
        )
        return self._send_object(201, rtype, created)

    def _update(self, call: _Call) -> int:
        rtype, info, namespace, query = call.rtype, call.info, call.namespace, call.query
        obj = _parse_object(call.body, self.headers.get("Content-Type"))
        name = (obj.get("metadata") or {}).get("name")
        if name != info.name:
            raise ApiError.bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({info.name})"
            )
        if not allows_unconditional_update(rtype) and not (obj.get("metadata") or {}).get(
            "resourceVersion"
        ):
            raise ApiError.resource_version_required(rtype, str(name))
        store = self.emulator.store
        options = _write_options(query, call.identity)
        if info.subresource == "status":
            options.pop("strict")
            updated = store.update_status(rtype, namespace, obj, **options)
        else:
            updated = store.update(rtype, namespace, obj, **options)
        return self._send_object(200, rtype, updated)

    def _patch(self, call: _Call) -> int:
        rtype, info, namespace, query = call.rtype, call.info, call.namespace, call.query
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            patch_type = PatchType(content_type)
        except ValueError:
            raise ApiError.unsupported_media_type(content_type) from None
        if patch_type is PatchType.APPLY and not query.get("fieldManager"):
            raise ApiError(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                "Required value: is required for apply patch",
            )
        try:
            patch = (
                yaml.safe_load(call.body)
                if patch_type is PatchType.APPLY
                else json.loads(call.body or b"null")
            )
        except (ValueError, yaml.YAMLError) as error:
            raise ApiError.bad_request(f"error decoding patch: {error}") from None
        store = self.emulator.store
        existed = True
        if patch_type is PatchType.APPLY:
            try:
                store.get(rtype, namespace, info.name or "")
            except ApiError:
                existed = False
        result = store.patch(
            rtype,
            namespace,
            info.name or "",
            patch_type,
            patch,
            subresource=info.subresource,
            field_manager=query.get("fieldManager"),
            **_write_options(query, call.identity),
        )
        return self._send_object(200 if existed else 201, rtype, result)

    def _delete(self, call: _Call) -> int:
        rtype, info, namespace, query = call.rtype, call.info, call.namespace, call.query
        options = _delete_options(call.body, query)
        preconditions = options.get("preconditions") or {}
        result, gone = self.emulator.store.delete(
            rtype,
            namespace,
            info.name or "",
            propagation=options.get("propagationPolicy"),
            uid=preconditions.get("uid"),
            resource_version=preconditions.get("resourceVersion"),
            dry_run=bool(options.get("dryRun")),
            grace_period_seconds=options.get("gracePeriodSeconds"),
        )
        if gone and rtype != r.PODS:
            details: JsonObject = {
                "name": info.name,
                "kind": rtype.plural,
                "uid": result["metadata"]["uid"],
            }
            if rtype.group:
                details["group"] = rtype.group
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
            return self._send_json(200, status)
        return self._send_object(200, rtype, result)

    def _delete_collection(self, call: _Call) -> int:
        rtype, namespace, query = call.rtype, call.namespace, call.query
        options = _delete_options(call.body, query)
        deleted = self.emulator.store.delete_collection(
            rtype,
            namespace,
            query.get("labelSelector"),
            query.get("fieldSelector"),
            propagation=options.get("propagationPolicy"),
        )
        document = {
            "kind": rtype.list_kind,
            "apiVersion": rtype.api_version,
            "metadata": {"resourceVersion": str(self.emulator.store.resource_version)},
            "items": [_presented(rtype, o) for o in deleted],
        }
        return self._send_json(200, document)

    def _send_object(self, code: int, rtype: ResourceType, obj: JsonObject) -> int:
        if accepts_table(self.headers.get("Accept")):
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return self._send_json(code, to_table(rtype, [_presented(rtype, obj)], meta))
        return self._send_json(code, _presented(rtype, obj))

    # ---- streams -----------------------------------------------------------------------------

    def _watch(self, call: _Call) -> int:
        rtype, namespace, query = call.rtype, call.namespace, call.query
        emulator = self.emulator
        timeout = _int_param(query, "timeoutSeconds")
        deadline = time.monotonic() + (timeout if timeout else emulator.watch_timeout)
        bookmarks = query.get("allowWatchBookmarks", "").lower() in _TRUE
        as_table = accepts_table(self.headers.get("Accept"))
        try:
            watch: Watch | None = emulator.store.watch(
                rtype,
                namespace,
                query.get("resourceVersion"),
                query.get("labelSelector"),
                query.get("fieldSelector"),
            )
        except ApiError as error:
            if error.code != 410:
                raise
            watch = None
            expired = error
        self._start_stream("application/json")
        if watch is None:
            self._write_chunk(_event_line("ERROR", expired.status()))
            self._end_stream()
            return 200
        sent = 0
        next_bookmark = time.monotonic() + emulator.bookmark_interval
        try:
            while not emulator.stopping.is_set():
                if (
                    call.effects.drop_watch_after is not None
                    and sent >= call.effects.drop_watch_after
                ):
                    self.connection.shutdown(socket.SHUT_RDWR)
                    raise _Dropped
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                event = watch.next(timeout=min(remaining, _POLL))
                if event is None:
                    if watch.closed or self._client_gone():
                        break
                    if bookmarks and time.monotonic() >= next_bookmark:
                        next_bookmark = time.monotonic() + emulator.bookmark_interval
                        self._write_chunk(_event_line("BOOKMARK", _bookmark(rtype, emulator)))
                    continue
                obj = _presented(rtype, event.object)
                if as_table:
                    meta = {"resourceVersion": str(event.resource_version)}
                    obj = to_table(rtype, [obj], meta)
                self._write_chunk(_event_line(event.type, obj))
                sent += 1
        finally:
            watch.close()
        self._end_stream()
        return 200

    def _log(
        self, rtype: ResourceType, info: RequestInfo, namespace: str | None, query: dict[str, str]
    ) -> int:
        store = self.emulator.store
        pod = store.get(rtype, namespace, info.name or "")
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in spec.get("containers") or []]
        others = [
            c.get("name")
            for key in ("initContainers", "ephemeralContainers")
            for c in spec.get(key) or []
        ]
        container = query.get("container")
        if not container:
            if len(names) != 1:
                raise ApiError.bad_request(
                    f"a container name must be specified for pod {info.name}, choose one of: "
                    f"[{' '.join(str(n) for n in names)}]"
                )
            container = str(names[0])
        elif container not in names + others:
            raise ApiError.bad_request(f"container {container} is not valid for pod {info.name}")
        provider = store.log_provider
        if provider is None:
            raise ApiError.bad_request(
                f'container "{container}" in pod "{info.name}" is waiting '
                "to start: ContainerCreating"
            )
        follow = query.get("follow", "").lower() in _TRUE
        chunks: Iterator[bytes] = provider(namespace or "", info.name or "", container, follow)
        tail = _int_param(query, "tailLines")
        limit = _int_param(query, "limitBytes")
        if tail is not None and not follow:
            lines = b"".join(chunks).splitlines(keepends=True)
            chunks = iter([b"".join(lines[-tail:] if tail else [])])
        first = next(chunks, b"")  # let the provider fail (404, 400) before the stream starts
        self._start_stream("text/plain")
        written = 0
        try:
            for chunk in _prepend(first, chunks):
                if limit is not None:
                    chunk = chunk[: max(limit - written, 0)]
                if chunk:
                    self._write_chunk(chunk)
                    written += len(chunk)
                elif self._client_gone() or self.emulator.stopping.is_set():
                    break
                if limit is not None and written >= limit:
                    break
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        self._end_stream()
        return 200

    def _access_review(self, rtype: ResourceType, body: bytes, identity: Identity) -> int:
        review = _parse_object(body, self.headers.get("Content-Type"))
        spec = review.get("spec") or {}
        attrs = spec.get("resourceAttributes")
        if attrs is not None:
            allowed = not self.emulator.rbac.enforced_for(identity) or self.emulator.rbac.allowed(
                identity,
                Attributes(
                    verb=attrs.get("verb", ""),
                    group=attrs.get("group", ""),
                    resource=attrs.get("resource", ""),
                    subresource=attrs.get("subresource") or None,
                    namespace=attrs.get("namespace") or None,
                    name=attrs.get("name") or None,
                ),
            )
        else:
            allowed = True  # non-resource URLs are open (see rbac)
        review["status"] = {"allowed": allowed}
        review.setdefault("apiVersion", rtype.api_version)
        review.setdefault("kind", rtype.kind)
        review.setdefault("metadata", {})
        return self._send_json(201, review)


_VERB_HANDLERS = {
    "get": _Handler._get,
    "list": _Handler._list,
    "watch": _Handler._watch,
    "create": _Handler._create,
    "update": _Handler._update,
    "patch": _Handler._patch,
    "delete": _Handler._delete,
    "deletecollection": _Handler._delete_collection,
}


def _attributes(info: RequestInfo) -> Attributes:
    return Attributes(
        verb=info.verb,
        group=info.group,
        resource=info.plural,
        subresource=info.subresource,
        namespace=info.namespace,
        name=info.name,
    )


def _presented(rtype: ResourceType, obj: JsonObject) -> JsonObject:
    """``obj`` as served at ``rtype``'s version (CRDs serve one object at every version)."""
    if obj.get("apiVersion") == rtype.api_version:
        return obj
    return dict(obj, apiVersion=rtype.api_version)


def _event_line(kind: str, obj: JsonObject) -> bytes:
    return msgspec.json.encode({"type": kind, "object": obj}) + b"\n"


def _bookmark(rtype: ResourceType, emulator: KubeEmulator) -> JsonObject:
    return {
        "kind": rtype.kind,
        "apiVersion": rtype.api_version,
        "metadata": {"resourceVersion": str(emulator.store.resource_version)},
    }


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _int_param(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise ApiError.bad_request(f"invalid value for {name}: {value!r}") from None


def _parse_object(body: bytes, content_type: str | None) -> JsonObject:
    media = (content_type or "application/json").split(";")[0].strip()
    if media == protobuf.MEDIA_TYPE:
        return protobuf.decode(body)
    try:
        if media in ("application/yaml", "application/x-yaml", "text/yaml"):
            document = yaml.safe_load(body)
        else:
            document = json.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as error:
        raise ApiError.bad_request(
            f"the body of the request could not be decoded: {error}"
        ) from None
    if not isinstance(document, dict):
        raise ApiError.bad_request("the body of the request must be a JSON object")
    return document


def _write_options(query: dict[str, str], identity: Identity) -> dict[str, Any]:
    return {
        "strict": query.get("fieldValidation") == "Strict",
        "dry_run": query.get("dryRun") == "All",
        "user": identity.user,
    }


def _delete_options(body: bytes, query: dict[str, str]) -> JsonObject:
    options: JsonObject = {}
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError as error:
            raise ApiError.bad_request(f"invalid DeleteOptions: {error}") from None
        if isinstance(parsed, dict):
            options = parsed
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    if "gracePeriodSeconds" in query:
        options["gracePeriodSeconds"] = query["gracePeriodSeconds"]
    if options.get("gracePeriodSeconds") is not None:
        try:
            options["gracePeriodSeconds"] = int(options["gracePeriodSeconds"])
        except (TypeError, ValueError):
            raise ApiError.bad_request("invalid DeleteOptions: gracePeriodSeconds") from None
    orphan = query.get("orphanDependents", options.get("orphanDependents"))
    if "propagationPolicy" not in options and orphan is not None:
        options["propagationPolicy"] = "Orphan" if str(orphan).lower() in _TRUE else "Background"
    if query.get("dryRun") == "All" or options.get("dryRun") == ["All"]:
        options["dryRun"] = True
    else:
        options.pop("dryRun", None)
    policy = options.get("propagationPolicy")
    if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
        raise ApiError(
            422,
            "Invalid",
            f'DeleteOptions.meta.k8s.io "" is invalid: '
            f'propagationPolicy: Unsupported value: "{policy}": supported values: '
            '"Foreground", "Background", "Orphan", "nil"',
        )
    return options
