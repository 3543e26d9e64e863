"""The instance's HTTP endpoint: `/healthz` (JSON verdict) and `/metrics` (Prometheus text).

The providers are plain callables so the server knows nothing of Redis; whatever they raise is
turned into a failed answer for that one request, and the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["METRICS_CONTENT_TYPE", "HealthServer"]

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_JSON = "application/json"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        health: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
    ) -> None:
        super().__init__(address, _Handler)
        self.health = health
        self.metrics = metrics

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a scraper hanging up is not worth that.
        log.debug("health endpoint: error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._healthz()
        elif path == "/metrics":
            self._metrics()
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _healthz(self) -> None:
        try:
            digest = self.server.health()
            body = json.dumps(digest).encode()
            status = 200 if digest.get("healthy") else 503
        except Exception as exc:
            log.warning("health provider failed: %s", exc)
            body = json.dumps({"healthy": False, "reasons": [_describe(exc)]}).encode()
            status = 503
        self._send(status, _JSON, body)

    def _metrics(self) -> None:
        try:
            body = self.server.metrics()
        except Exception as exc:
            log.warning("metrics provider failed: %s", exc)
            self._send(500, "text/plain; charset=utf-8", f"{_describe(exc)}\n".encode())
            return
        self._send(200, METRICS_CONTENT_TYPE, body)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Load balancers and scrapers poll every few seconds; a line each would drown the logs.
        pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class HealthServer:
    """Serves `/healthz` and `/metrics` from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
    ) -> None:
        self.host = host
        self._requested_port = port
        self._health = health
        self._metrics = metrics
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on: the one chosen by the OS once started if 0 was asked for."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve in a daemon thread."""
        if self._server is not None:
            return
        self._server = _Server((self.host, self._requested_port), self._health, self._metrics)
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
