"""The agent's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

A small WSGI app served from threads of its own, so a busy event loop never makes a probe
fail, and one slow client never holds up the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from ocscan.errors import OcscanError

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

_SHUTDOWN_POLL_SECONDS = 0.1  # how soon stop() ends the accept loop


class ListenError(OcscanError):
    """The endpoints cannot listen on the configured address."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log."""


class _Server(ThreadingWSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr, outside the JSON log.
        log.warning("HTTP request from %s failed", client_address[0], exc_info=True)


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

        try:
            self._server = make_server(
                host, port, app, server_class=_Server, handler_class=_QuietHandler
            )
        except OSError as error:
            raise ListenError(
                f"cannot listen on {host}:{port} (agent.listen_host, agent.listen_port): "
                f"{error.strerror or error}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
            name="ocscan-http",
            daemon=True,
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
