"""The agent's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

A small WSGI app in a thread of its own, so a busy event loop never makes a probe fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log."""


class HealthServer:
    """Serves the endpoints until :meth:`stop`. ``ready`` and ``alive`` are read per request."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str,
        port: int,
        alive: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        metrics = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                body: Iterable[bytes] = metrics(environ, start_response)
                return body
            checks = {"/healthz": alive, "/readyz": ready}
            if path not in checks:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found\n"]
            ok = checks[path]()
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [b"ok\n" if ok else b"not ok\n"]

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ocscan-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
