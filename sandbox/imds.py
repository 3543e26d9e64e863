"""`LocalImdsServer`: a stand-in instance metadata service, for tests and the local sandbox.

It follows AWS's documented paths and IMDSv2 token flow (`fleetkit.core.imds`), lets tests set
notices and inject faults, and offers a control API (`POST /fleetkit/...`) so a worker in another
process can be sent a notice over HTTP. Run it with `python -m fleetkit.sandbox.imds --port 8111`.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import unquote

from fleetkit.core.imds import (
    AVAILABILITY_ZONE_PATH,
    IDENTITY_DOCUMENT_PATH,
    INSTANCE_ID_PATH,
    INSTANCE_TYPE_PATH,
    LIFECYCLE_PATH,
    MAX_TOKEN_TTL_S,
    REBALANCE_PATH,
    REGION_PATH,
    SPOT_PATH,
    SPOT_TERMINATION_TIME_PATH,
    TOKEN_HEADER,
    TOKEN_PATH,
    TTL_HEADER,
)

__all__ = ["LocalImdsServer", "main"]

log = logging.getLogger(__name__)

# The parts of the identity document nothing here depends on.
_IDENTITY_DEFAULTS: dict[str, str | None] = {
    "accountId": "123456789012",
    "architecture": "arm64",
    "imageId": "ami-0123456789abcdef0",
    "privateIp": "10.0.0.10",
    "version": "2017-09-30",
    # Fields AWS sends as null on an instance without marketplace codes or custom kernels.
    **dict.fromkeys(("billingProducts", "devpayProductCodes", "marketplaceProductCodes")),
    **dict.fromkeys(("kernelId", "ramdiskId")),
}


def _aws_time(moment: datetime) -> str:
    """AWS's notice timestamp: UTC, whole seconds, a literal Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Fault:
    suffix: str
    status: int
    remaining: int


@dataclass
class _State:
    """Everything the handler threads read and the control methods write, under one lock."""

    instance_id: str
    region: str
    availability_zone: str
    instance_type: str
    require_token: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    spot: tuple[str, datetime] | None = None
    rebalance: datetime | None = None
    lifecycle: str = "InService"
    faults: list[_Fault] = field(default_factory=list)
    bodies: dict[str, str] = field(default_factory=dict)  # path suffix -> malformed body
    delay_s: float = 0.0
    requests: Counter[str] = field(default_factory=Counter)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def metadata(self, path: str) -> str | None:
        """The body AWS would serve at `path`, or None for 404. Caller holds the lock."""
        document = {
            **_IDENTITY_DEFAULTS,
            "availabilityZone": self.availability_zone,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "pendingTime": _aws_time(self.started),
            "region": self.region,
        }
        fixed = {
            INSTANCE_ID_PATH: self.instance_id,
            INSTANCE_TYPE_PATH: self.instance_type,
            REGION_PATH: self.region,
            AVAILABILITY_ZONE_PATH: self.availability_zone,
            LIFECYCLE_PATH: self.lifecycle,
            IDENTITY_DOCUMENT_PATH: json.dumps(document, indent=2),
        }
        if path in fixed:
            return fixed[path]
        if self.spot is not None and path == SPOT_PATH:
            action, at = self.spot
            return json.dumps({"action": action, "time": _aws_time(at)})
        if self.spot is not None and path == SPOT_TERMINATION_TIME_PATH:
            return _aws_time(self.spot[1])
        if self.rebalance is not None and path == REBALANCE_PATH:
            return json.dumps({"noticeTime": _aws_time(self.rebalance)})
        return None

    def take_fault(self, path: str) -> int | None:
        """The status of the next injected failure for `path`, if any. Caller holds the lock."""
        for fault in self.faults:
            if path.endswith(fault.suffix) and fault.remaining > 0:
                fault.remaining -= 1
                return fault.status
        return None


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: LocalImdsServer) -> None:
        self.owner = owner  # the control API calls the same methods tests call
        self.state = owner._state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) leaves a broken pipe behind; that is no error.
        log.debug("request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "EC2ws"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle(self.command)

    do_PUT = do_POST = do_GET

    def _handle(self, method: str) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        # The control API is not IMDS: neither counted nor slowed down by injected faults.
        if path.startswith("/fleetkit/"):
            self._control(method, path)
            return
        with state.lock:
            state.requests[path] += 1
            delay = state.delay_s
        if delay:
            time.sleep(delay)
        with state.lock:
            fault = state.take_fault(path)
        if fault is not None:
            self._reply(fault, "")
        elif path == TOKEN_PATH:
            self._token(method)
        elif method != "GET":
            self._reply(405, "")
        elif state.require_token and not self._token_valid():
            self._reply(401, "")
        else:
            with state.lock:
                body = next((b for s, b in state.bodies.items() if path.endswith(s)), None)
                if body is None:
                    body = state.metadata(path)
            if body is None:
                self._reply(404, "")
            else:
                self._reply(200, body)

    def _token(self, method: str) -> None:
        if method != "PUT":
            self._reply(405, "")
            return
        # AWS refuses token requests that went through a proxy.
        if self.headers.get("X-Forwarded-For") is not None:
            self._reply(403, "")
            return
        try:
            ttl = int(self.headers.get(TTL_HEADER, ""))
        except ValueError:
            ttl = 0
        if not 1 <= ttl <= MAX_TOKEN_TTL_S:
            self._reply(400, "")
            return
        token = secrets.token_urlsafe(42)
        state = self.server.state
        with state.lock:
            now = time.monotonic()
            state.tokens = {t: exp for t, exp in state.tokens.items() if exp > now}
            state.tokens[token] = now + ttl
        self._reply(200, token, {TTL_HEADER: str(ttl)})

    def _token_valid(self) -> bool:
        token = self.headers.get(TOKEN_HEADER)
        state = self.server.state
        with state.lock:
            expiry = state.tokens.get(token or "")
        return expiry is not None and time.monotonic() < expiry

    def _control(self, method: str, path: str) -> None:
        imds = self.server.owner
        if method == "GET" and path == "/fleetkit/requests":
            self._json(200, imds.request_counts())
            return
        if method != "POST":
            self._reply(405, "")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            options = json.loads(raw) if raw.strip() else {}
            if not isinstance(options, dict):
                raise ValueError("expected a JSON object")
            at = datetime.now(UTC) + timedelta(seconds=float(options.get("in_seconds", 120)))
            if path == "/fleetkit/notice/spot":
                imds.set_spot_interruption(str(options.get("action", "terminate")), at)
            elif path == "/fleetkit/notice/rebalance":
                imds.set_rebalance(datetime.now(UTC))
            elif path.startswith("/fleetkit/lifecycle/") and path.count("/") == 3:
                imds.set_lifecycle_state(unquote(path.rsplit("/", 1)[1]))
            elif path == "/fleetkit/clear":
                imds.clear()
            else:
                self._json(404, {"error": f"no control endpoint {path}"})
                return
        except (ValueError, TypeError, OverflowError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"ok": True})

    def _json(self, status: int, data: object) -> None:
        self._reply(status, json.dumps(data), content_type="application/json")

    def _reply(
        self,
        status: int,
        body: str,
        headers: dict[str, str] | None = None,
        content_type: str = "text/plain",
    ) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LocalImdsServer:
    """An IMDSv2 lookalike on a local port, driven by control methods or its HTTP control API."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        instance_id: str = "i-0123456789abcdef0",
        region: str = "us-east-1",
        require_token: bool = True,
        *,
        availability_zone: str | None = None,
        instance_type: str = "m7g.large",
    ) -> None:
        self.host = host
        self.port = port
        self._state = _State(
            instance_id=instance_id,
            region=region,
            availability_zone=availability_zone or f"{region}a",
            instance_type=instance_type,
            require_token=require_token,
        )
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def instance_id(self) -> str:
        return self._state.instance_id

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8111; the real port once started."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalImdsServer:
        """Bind and serve in a background thread."""
        if self._httpd is not None:
            return self
        self._httpd = _HttpServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (waits for requests in flight)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> LocalImdsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_spot_interruption(self, action: str = "terminate", at: datetime | None = None) -> None:
        """Mark the instance for interruption at `at` (default: two minutes from now)."""
        moment = at if at is not None else datetime.now(UTC) + timedelta(seconds=120)
        with self._state.lock:
            self._state.spot = (action, moment)

    def set_rebalance(self, at: datetime | None = None) -> None:
        """Issue a rebalance recommendation noticed at `at` (default: now)."""
        with self._state.lock:
            self._state.rebalance = at if at is not None else datetime.now(UTC)

    def set_lifecycle_state(self, state: str) -> None:
        """Set autoscaling/target-lifecycle-state, e.g. "Terminated"."""
        with self._state.lock:
            self._state.lifecycle = state

    def fail_next(self, path_suffix: str, status: int, count: int = 1) -> None:
        """Answer the next `count` requests whose path ends with `path_suffix` with `status`."""
        with self._state.lock:
            self._state.faults.append(_Fault(path_suffix, status, count))

    def malformed(self, path_suffix: str, body: str) -> None:
        """Serve `body` with 200 at paths ending with `path_suffix` until cleared."""
        with self._state.lock:
            self._state.bodies[path_suffix] = body

    def delay(self, seconds: float) -> None:
        """Wait this long before answering any request (0 to stop)."""
        with self._state.lock:
            self._state.delay_s = max(0.0, seconds)

    def revoke_tokens(self) -> None:
        """Forget every token, as a restarted IMDS would: the next GETs get 401."""
        with self._state.lock:
            self._state.tokens.clear()

    def clear_faults(self) -> None:
        """Drop injected failures, malformed bodies and the delay."""
        with self._state.lock:
            self._state.faults.clear()
            self._state.bodies.clear()
            self._state.delay_s = 0.0

    def clear(self) -> None:
        """Back to a healthy, InService instance with no notices."""
        self.clear_faults()
        with self._state.lock:
            self._state.spot = None
            self._state.rebalance = None
            self._state.lifecycle = "InService"

    def request_count(self, path_suffix: str) -> int:
        """How many requests (any method) hit paths ending with `path_suffix`."""
        with self._state.lock:
            return sum(n for path, n in self._state.requests.items() if path.endswith(path_suffix))

    def request_counts(self) -> dict[str, int]:
        """Requests per path so far."""
        with self._state.lock:
            return dict(self._state.requests)

    @property
    def token_requests(self) -> int:
        """How many token PUTs were made."""
        return self.request_count(TOKEN_PATH)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a local IMDS until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m fleetkit.sandbox.imds", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8111)
    parser.add_argument("--instance-id", default="i-0123456789abcdef0")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--no-require-token", dest="require_token", action="store_false")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s"
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server = LocalImdsServer(
            args.host, args.port, args.instance_id, args.region, args.require_token
        ).start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", flush=True)
        return 1
    print(f"local IMDS serving at {server.url} (control API under /fleetkit/)", flush=True)
    try:
        # A timed wait keeps the main thread responsive to signals.
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
