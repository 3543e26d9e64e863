"""The HTTP endpoint of an instance or a daemon: `/healthz` (a JSON verdict) and `/metrics`.

`/metrics` is prometheus_client's own WSGI app over the caller's registry, so scrapers get what
they ask for: Prometheus text, OpenMetrics (`Accept: application/openmetrics-text`), gzip. The
health provider is a plain callable, so the server knows nothing of Redis; whatever it or a
collector raises becomes a failed answer for that one request, and the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["HealthServer"]

log = logging.getLogger(__name__)

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # Load balancers and scrapers poll every few seconds; a line each would drown the logs.
        pass


class _Server(ThreadingWSGIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a scraper hanging up is not worth that.
        log.debug("health endpoint: error serving %s", client_address, exc_info=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class HealthServer:
    """Serves `/healthz` and `/metrics` from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], dict[str, Any]],
        registry: CollectorRegistry,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._health = health
        self._metrics = make_wsgi_app(registry)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on: the one chosen by the OS once started if 0 was asked for."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    def app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application: `/healthz`, `/metrics`, 404 for anything else."""
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return self._healthz(start_response)
        if path == "/metrics":
            try:
                # prometheus_client collects before it starts the response, so a collector
                # that fails leaves the response ours to send.
                body: Iterable[bytes] = self._metrics(environ, start_response)
            except Exception as exc:
                # DEBUG: the answer says why, and a scraper asks every few seconds while Redis
                # is away (the outage itself is logged once, by whoever watches Redis).
                log.debug("metrics collection failed: %s", exc)
                failed = f"{_describe(exc)}\n"
                return _send(start_response, "500 Internal Server Error", _TEXT, failed)
            return body
        return _send(start_response, "404 Not Found", _TEXT, "not found\n")

    def _healthz(self, start_response: StartResponse) -> Iterable[bytes]:
        try:
            digest = self._health()
            body = json.dumps(digest)
            status = "200 OK" if digest.get("healthy") else "503 Service Unavailable"
        except Exception as exc:
            log.debug("health provider failed: %s", exc)  # the answer says why
            body = json.dumps({"healthy": False, "reasons": [_describe(exc)]})
            status = "503 Service Unavailable"
        return _send(start_response, status, _JSON, body)

    def start(self) -> None:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            return
        self._server = make_server(
            self.host,
            self._requested_port,
            self.app,
            server_class=_Server,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"health-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _send(start_response: StartResponse, status: str, content_type: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [data]
