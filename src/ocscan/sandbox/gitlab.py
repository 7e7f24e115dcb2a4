"""A GitLab emulator for the agent API's ``starboard_vulnerability`` module, over real HTTP.

It serves the three routes under ``/api/v4/internal/kubernetes/modules/starboard_vulnerability``
on 127.0.0.1 from background threads, so async clients in the same process (pytest) talk to
it over a real socket. What it enforces, as GitLab does:

- ``Gitlab-Kas-Api-Request``: an HS256 JWT signed with the KAS shared secret, ``iss``
  gitlab-kas, ``aud`` gitlab, inside its ``nbf``/``exp`` window; else 401.
- ``Authorization: Bearer <agent token>`` of a known agent; else 401.
- The PUT body's required fields and types (400 naming the field, in Grape's words),
  severity and confidence values (coerced to lower case, as GitLab does).

Findings are keyed by GitLab's identity: the token's agent, the primary identifier, and the
location fingerprint (agent id, namespace, kind, name, package name; not the image, the
version or the container). The same finding gets the same uuid (a UUIDv5 of that identity).
A PUT of a resolved finding detects it again; ``POST /scan_result`` resolves every detected
finding of the calling agent whose uuid it does not list.

Stricter than GitLab, to catch client bugs: values must be JSON strings (Grape would coerce
numbers), ``identifiers`` must not be empty, and the body's ``agent_id`` must be the agent
of the token.

Tests inspect :meth:`GitLabEmulator.findings` and :attr:`GitLabEmulator.requests`, and
inject faults (:meth:`GitLabEmulator.fail_next`, ``delay_next``, ``disconnect_next``).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

import jwt

from ocscan.sandbox.errors import SandboxError
from ocscan.sandbox.lifecycle import StartsOnEnter
from ocscan.sandbox.processes import LOOPBACK

BASE_PATH = "/api/v4/internal/kubernetes/modules/starboard_vulnerability"
KAS_HEADER = "Gitlab-Kas-Api-Request"
SEVERITIES = ("critical", "high", "medium", "low", "info", "unknown")
CONFIDENCES = ("ignore", "unknown", "experimental", "low", "medium", "high", "confirmed")
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://gitlab.example/cluster_image_scanning")
_IDLE_CONNECTION_SECONDS = 5.0
_SHUTDOWN_POLL_SECONDS = 0.02  # how fast stop() ends the accept loop

State = Literal["detected", "resolved"]

# The PUT body, as GitLab's Grape parameters declare it: name -> (required, type or nested).
_Spec = dict[str, tuple[bool, Any]]
_PACKAGE: _Spec = {"name": (True, str)}
_DEPENDENCY: _Spec = {"package": (True, _PACKAGE), "version": (False, str)}
_KUBERNETES_RESOURCE: _Spec = {
    "namespace": (True, str),
    "name": (True, str),
    "kind": (True, str),
    "container_name": (True, str),
    "agent_id": (True, str),
}
_LOCATION: _Spec = {
    "image": (True, str),
    "operating_system": (False, str),
    "dependency": (True, _DEPENDENCY),
    "kubernetes_resource": (True, _KUBERNETES_RESOURCE),
}
_IDENTIFIER: _Spec = {
    "type": (True, str),
    "name": (True, str),
    "value": (False, str),
    "url": (False, str),
}
_LINK: _Spec = {"name": (False, str), "url": (True, str)}
_VULNERABILITY: _Spec = {
    "name": (True, str),
    "severity": (True, str),
    "confidence": (False, str),
    "message": (False, str),
    "description": (False, str),
    "solution": (False, str),
    "links": (False, [_LINK]),
    "identifiers": (True, [_IDENTIFIER]),
    "location": (True, _LOCATION),
}
_SCANNER: _Spec = {
    "id": (True, str),
    "name": (True, str),
    "vendor": (True, {"name": (True, str)}),
    "version": (False, str),
}
_PUT_BODY: _Spec = {"vulnerability": (True, _VULNERABILITY), "scanner": (True, _SCANNER)}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it, and the status it answered."""

    method: str
    path: str
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: Any
    """The parsed JSON body, or None."""
    status: int
    fault: str | None = None
    """The injected fault that answered, if any."""


@dataclass(frozen=True)
class StoredFinding:
    """A finding as GitLab keeps it."""

    uuid: str
    agent_id: str
    state: State
    vulnerability: Mapping[str, Any]
    """The last PUT's vulnerability, with severity and confidence in lower case."""
    scanner: Mapping[str, Any]
    uploads: int = 1

    @property
    def namespace(self) -> str:
        return str(self._resource["namespace"])

    @property
    def kind(self) -> str:
        return str(self._resource["kind"])

    @property
    def name(self) -> str:
        return str(self._resource["name"])

    @property
    def package_name(self) -> str:
        return str(self.vulnerability["location"]["dependency"]["package"]["name"])

    @property
    def identifier(self) -> str:
        return str(self.vulnerability["identifiers"][0]["name"])

    @property
    def _resource(self) -> Mapping[str, Any]:
        resource: Mapping[str, Any] = self.vulnerability["location"]["kubernetes_resource"]
        return resource


@dataclass
class Fault:
    """Answer the next ``count`` matching requests with ``status``, or drop the connection.

    A ``delay`` holds the request first; with ``status`` None it is then served normally.
    ``where`` narrows the fault to the requests it returns True for: ``(method, path, body)``
    (``body`` is the parsed JSON or None; an exception in it means no match).
    """

    count: int = 1
    status: int | None = 500
    message: str | None = None
    """The answer's ``message``; the status line's words by default."""
    retry_after: str | None = None
    delay: float = 0.0
    disconnect: bool = False
    method: str | None = None
    where: Callable[[str, str, Any], bool] | None = None

    def matches(self, method: str, path: str, body: Any) -> bool:
        if self.count <= 0 or (self.method is not None and self.method != method):
            return False
        if self.where is None:
            return True
        try:
            return self.where(method, path, body)
        except Exception:
            return False


@dataclass
class _Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False
    fault: str | None = None


class _BadRequest(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class GitLabEmulator(StartsOnEnter):
    """The agent API of a GitLab with one project and its agents.

    ``agents`` maps each agent token to its agent id. ``policies`` is the answer of
    ``GET /policies_configuration``; None answers 402 (no licence). Call :meth:`start`, or use
    the object as a context manager; :meth:`stop` closes every connection and joins the
    server threads.
    """

    def __init__(
        self,
        agents: Mapping[str, str],
        *,
        kas_secret: bytes | None = None,
        policies: list[dict[str, Any]] | None = None,
    ) -> None:
        if not agents:
            raise SandboxError("the GitLab emulator needs at least one agent token")
        self.kas_secret = kas_secret if kas_secret is not None else secrets.token_bytes(32)
        self.policies = policies
        self._agents = dict(agents)
        self._lock = threading.Lock()
        self._findings: dict[str, StoredFinding] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """GitLab's base URL, e.g. ``http://127.0.0.1:40123``."""
        if self._server is None:
            raise SandboxError("the GitLab emulator is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def kas_secret_file_content(self) -> str:
        """The KAS shared secret as GitLab's ``gitlab_kas.secret_file`` holds it (base64)."""
        return base64.b64encode(self.kas_secret).decode() + "\n"

    def add_agent(self, token: str, agent_id: str) -> None:
        with self._lock:
            self._agents[token] = agent_id

    def start(self) -> Self:
        if self._server is not None:
            raise SandboxError("the GitLab emulator is already running")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
            name="gitlab-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes requests held by a delay fault
        server.shutdown()
        server.close_connections()
        server.server_close()  # joins the request threads
        thread.join()
        self._server = self._thread = None

    # Inspection

    def findings(
        self, *, agent_id: str | None = None, state: State | None = None
    ) -> list[StoredFinding]:
        """Stored findings (copies), in creation order, optionally filtered."""
        with self._lock:
            stored = copy.deepcopy(list(self._findings.values()))
        return [
            f
            for f in stored
            if (agent_id is None or f.agent_id == agent_id) and (state is None or f.state == state)
        ]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # Fault injection

    def inject(self, fault: Fault) -> None:
        """Queue ``fault``; of several matching faults the first queued answers."""
        with self._lock:
            self._faults.append(fault)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        method: str | None = None,
        message: str | None = None,
        retry_after: str | None = None,
        where: Callable[[str, str, Any], bool] | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status``."""
        self.inject(
            Fault(
                count=count,
                status=status,
                message=message,
                method=method,
                retry_after=retry_after,
                where=where,
            )
        )

    def delay_next(self, count: int, seconds: float, *, method: str | None = None) -> None:
        """Hold the next ``count`` matching requests ``seconds`` before serving them."""
        self.inject(Fault(count=count, status=None, delay=seconds, method=method))

    def disconnect_next(self, count: int = 1, *, method: str | None = None) -> None:
        """Close the connection of the next ``count`` matching requests without an answer."""
        self.inject(Fault(count=count, disconnect=True, method=method))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # Serving

    def _handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> _Answer:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body, malformed = None, True
        else:
            malformed = False
        answer, delayed = self._fault_answer(method, path, body)
        if answer is None:
            answer = self._serve(method, path, headers, body, malformed)
            answer.fault = delayed
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    headers=dict(headers),
                    body=body,
                    status=answer.status,
                    fault=answer.fault,
                )
            )
        return answer

    def _fault_answer(self, method: str, path: str, body: Any) -> tuple[_Answer | None, str | None]:
        """The injected answer, if any; else the label of a delay to note on the real answer."""
        with self._lock:
            fault = next((f for f in self._faults if f.matches(method, path, body)), None)
            if fault is None:
                return None, None
            fault.count -= 1
            fault = replace(fault)
        delayed = f"delay {fault.delay:g} s" if fault.delay else None
        if fault.delay and self._stopping.wait(fault.delay):  # stopping: no answer at all
            return _Answer(status=0, disconnect=True, fault=delayed), None
        if fault.disconnect:
            return _Answer(status=0, disconnect=True, fault="disconnect"), None
        if fault.status is None:
            return None, delayed
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        phrase = HTTPStatus(fault.status).phrase if fault.status in _PHRASES else "Error"
        return _Answer(
            status=fault.status,
            body={"message": fault.message or f"{fault.status} {phrase}"},
            headers=headers,
            fault=f"status {fault.status}",
        ), None

    def _serve(
        self, method: str, path: str, headers: Mapping[str, str], body: Any, malformed: bool
    ) -> _Answer:
        route = _route(path)
        if route is None:
            return _Answer(404, {"message": "404 Not Found"})
        allowed = _ROUTES[route]
        if method != allowed:
            return _Answer(405, {"message": "405 Method Not Allowed"}, {"Allow": allowed})
        if self.kas_problem(headers.get(KAS_HEADER.lower())) is not None:
            return _Answer(401, {"message": "401 Unauthorized"})
        agent_id = self._agent_of(headers.get("authorization"))
        if agent_id is None:
            return _Answer(401, {"message": "401 Unauthorized"})
        if malformed:
            return _Answer(400, {"error": "the request body is not valid JSON"})
        try:
            if route == "":
                return self._put(agent_id, body)
            if route == "/scan_result":
                return self._scan_result(agent_id, body)
            return self._policies()
        except _BadRequest as bad:
            return _Answer(400, {"error": bad.error})

    def kas_problem(self, token: str | None) -> str | None:
        """Why GitLab would refuse ``token`` as a ``Gitlab-Kas-Api-Request``; None if valid."""
        if not token:
            return f"no {KAS_HEADER} header"
        try:
            jwt.decode(
                token,
                self.kas_secret,
                algorithms=["HS256"],
                audience="gitlab",
                issuer="gitlab-kas",
                options={"require": ["iss", "aud", "iat", "nbf", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def _agent_of(self, authorization: str | None) -> str | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            return self._agents.get(token.strip())

    def _put(self, agent_id: str, body: Any) -> _Answer:
        _validate(body, _PUT_BODY, "")
        vulnerability = copy.deepcopy(body["vulnerability"])
        severity = vulnerability["severity"].lower()
        if severity not in SEVERITIES:
            raise _BadRequest("vulnerability[severity] does not have a valid value")
        vulnerability["severity"] = severity
        if "confidence" in vulnerability:
            confidence = vulnerability["confidence"].lower()
            if confidence not in CONFIDENCES:
                raise _BadRequest("vulnerability[confidence] does not have a valid value")
            vulnerability["confidence"] = confidence
        if not vulnerability["identifiers"]:
            raise _BadRequest("vulnerability[identifiers] is empty")
        resource = vulnerability["location"]["kubernetes_resource"]
        if resource["agent_id"] != agent_id:
            raise _BadRequest(
                "vulnerability[location][kubernetes_resource][agent_id] is not the agent "
                "of the token"
            )
        finding_uuid = _finding_uuid(agent_id, vulnerability)
        with self._lock:
            current = self._findings.get(finding_uuid)
            self._findings[finding_uuid] = StoredFinding(
                uuid=finding_uuid,
                agent_id=agent_id,
                state="detected",
                vulnerability=vulnerability,
                scanner=copy.deepcopy(body["scanner"]),
                uploads=current.uploads + 1 if current else 1,
            )
        return _Answer(200, {"uuid": finding_uuid})

    def _scan_result(self, agent_id: str, body: Any) -> _Answer:
        if not isinstance(body, dict) or "uuids" not in body:
            raise _BadRequest("uuids is missing")
        uuids = body["uuids"]
        if not isinstance(uuids, list) or not all(isinstance(u, str) for u in uuids):
            raise _BadRequest("uuids is invalid")
        keep = set(uuids)
        with self._lock:
            for key, finding in self._findings.items():
                if (
                    finding.agent_id == agent_id
                    and finding.state == "detected"
                    and finding.uuid not in keep
                ):
                    self._findings[key] = replace(finding, state="resolved")
        return _Answer(200)

    def _policies(self) -> _Answer:
        if self.policies is None:
            return _Answer(402, {"message": "Payment Required"})
        return _Answer(200, {"configurations": copy.deepcopy(self.policies)})


_ROUTES = {"": "PUT", "/scan_result": "POST", "/policies_configuration": "GET"}
_PHRASES = {status.value for status in HTTPStatus}


def _route(path: str) -> str | None:
    if not path.startswith(BASE_PATH):
        return None
    rest = path[len(BASE_PATH) :].rstrip("/")
    return rest if rest in _ROUTES else None


def _validate(value: Any, spec: Any, where: str) -> None:
    """Raise the first Grape-style error of ``value`` against ``spec``."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _BadRequest(f"{where or 'body'} is invalid")
        missing = [
            _name(where, key)
            for key, (required, _) in spec.items()
            if required and key not in value
        ]
        if missing:
            raise _BadRequest(", ".join(f"{name} is missing" for name in missing))
        for key, (required, nested) in spec.items():
            if value.get(key) is not None:
                _validate(value[key], nested, _name(where, key))
            elif required:
                raise _BadRequest(f"{_name(where, key)} is empty")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise _BadRequest(f"{where} is invalid")
        for index, item in enumerate(value):
            _validate(item, spec[0], f"{where}[{index}]")
    elif not isinstance(value, spec):
        raise _BadRequest(f"{where} is invalid")


def _name(where: str, key: str) -> str:
    return f"{where}[{key}]" if where else key


def _finding_uuid(agent_id: str, vulnerability: Mapping[str, Any]) -> str:
    location = vulnerability["location"]
    resource = location["kubernetes_resource"]
    primary = vulnerability["identifiers"][0]
    identity = [
        "cluster_image_scanning",
        primary["type"].lower(),
        primary.get("value") or primary["name"],
        agent_id,
        resource["namespace"],
        resource["kind"],
        resource["name"],
        location["dependency"]["package"]["name"],
    ]
    return str(uuid.uuid5(_UUID_NAMESPACE, json.dumps(identity)))


class _Server(ThreadingHTTPServer):
    """Threads per connection; tracks connections so that stopping never waits on idle ones."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, emulator: GitLabEmulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_CONNECTION_SECONDS
    # One segment per answer, sent at once (headers and body apart wait out a delayed ACK).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._respond()

    def do_PUT(self) -> None:
        self._respond()

    def do_POST(self) -> None:
        self._respond()

    def do_DELETE(self) -> None:
        self._respond()

    def do_PATCH(self) -> None:
        self._respond()

    def _respond(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        path = self.path.split("?", 1)[0]
        answer = self.server.emulator._handle(self.command, path, headers, raw)
        if answer.disconnect:
            self.close_connection = True
            return
        payload = b"" if answer.body is None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read :attr:`GitLabEmulator.requests` instead."""
