"""`ImdsTerminationNoticeSource`: termination notices from the EC2 instance metadata service.

IMDSv2 only (the launch templates require tokens). Everything that can go wrong talking to IMDS —
timeouts, refused connections, 5xx, a token that stops working, a body AWS would not send — is
logged (at most once a minute per path) and read as "no notice this time": a watcher that raises
would stop watching, which is worse than missing one poll.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

import httpx

from fleetkit.core.imds import (
    INSTANCE_ID_PATH,
    LIFECYCLE_PATH,
    MAX_TOKEN_TTL_S,
    REBALANCE_PATH,
    REGION_PATH,
    SPOT_PATH,
    TOKEN_HEADER,
    TOKEN_PATH,
    TTL_HEADER,
)
from fleetkit.worker.errors import WorkerConfigError
from fleetkit.worker.notices import (
    MalformedNotice,
    TerminationNotice,
    most_urgent,
    parse_lifecycle_state,
    parse_rebalance,
    parse_spot_action,
)

__all__ = ["DEFAULT_ENDPOINT", "ENDPOINT_ENV", "ImdsTerminationNoticeSource"]

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_ENV = (
    "AWS_EC2_METADATA_SERVICE_ENDPOINT"  # botocore's variable, so one setting serves both
)

_Parser = Callable[[str, datetime], TerminationNotice | None]
# Spot first: when IMDS stops answering mid-poll, the notice with a hard deadline was read.
_NOTICE_PATHS: tuple[tuple[str, _Parser], ...] = (
    (SPOT_PATH, parse_spot_action),
    (LIFECYCLE_PATH, parse_lifecycle_state),
    (REBALANCE_PATH, parse_rebalance),
)

# The one table that turns httpx's transport errors into what the log says; the first match wins.
_TRANSPORT_ERRORS: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.TimeoutException, "timed out"),
    (httpx.ConnectError, "connection failed"),
    (httpx.NetworkError, "network error"),
    (httpx.RemoteProtocolError, "broken response"),
    (httpx.HTTPError, "HTTP error"),
)


class _Unanswered(Exception):
    """IMDS did not answer at all: the rest of this poll would only wait for more timeouts."""


class _Failed(Exception):
    """IMDS answered, but not with something usable."""


class _NoTokens(_Failed):
    """What answered gives no IMDSv2 token: disabled or forbidden (403), or not AWS's IMDS at
    all (another cloud's metadata service, any other web server). Throttling (429) and server
    errors (5xx) are an unhappy IMDS instead, tried again on every poll."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The argument, else $AWS_EC2_METADATA_SERVICE_ENDPOINT, else the link-local address."""
    chosen = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    chosen = chosen.strip().rstrip("/")
    if not chosen.startswith(("http://", "https://")):
        source = "the endpoint argument" if endpoint else f"${ENDPOINT_ENV}"
        raise WorkerConfigError(
            f"{source} is {chosen!r}: give a URL such as {DEFAULT_ENDPOINT} or http://127.0.0.1:8111"
        )
    return chosen


class ImdsTerminationNoticeSource:
    """Spot interruption, rebalance and ASG lifecycle notices read from IMDSv2."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        timeout_s: float = 1.0,
        token_ttl_s: int = MAX_TOKEN_TTL_S,
        probe_attempts: int = 3,
        warn_interval_s: float = 60.0,
        clock: Callable[[], datetime] = _utcnow,
        logger: logging.Logger = log,
    ) -> None:
        if not 1 <= token_ttl_s <= MAX_TOKEN_TTL_S:
            raise WorkerConfigError(
                f"token_ttl_s must be 1..{MAX_TOKEN_TTL_S} (IMDS's limit), not {token_ttl_s}"
            )
        self.endpoint = resolve_endpoint(endpoint)
        self.timeout_s = timeout_s
        self.token_ttl_s = token_ttl_s
        self.probe_attempts = max(1, probe_attempts)
        self.warn_interval_s = warn_interval_s
        self._clock = clock
        self._log = logger
        # trust_env=False: IMDS must never go through HTTP(S)_PROXY, and AWS refuses token
        # requests that carry X-Forwarded-For anyway.
        self._client = httpx.Client(base_url=self.endpoint, timeout=timeout_s, trust_env=False)
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = threading.Lock()
        self._probed = False
        self._enabled = True
        self._last_warned: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """False once a probe found no metadata service; poll() then returns None at once."""
        return self._enabled

    def probe(self) -> bool:
        """Look for IMDS (a few token requests); disable the source when nobody answers, or
        when what answers gives no token (then one line says so, and the source stays quiet)."""
        refused: _NoTokens | None = None
        for attempt in range(self.probe_attempts):
            if attempt:
                time.sleep(0.1 * attempt)
            try:
                self._fresh_token()
            except (_Unanswered, _NoTokens) as exc:
                # Kept at debug: off EC2 this is expected; in a container it may be the hop limit.
                self._log.debug("probe %d of %s: %s", attempt + 1, self.endpoint, exc)
                refused = exc if isinstance(exc, _NoTokens) else None
                continue
            except _Failed as exc:
                # Something answered: IMDS is there but unhappy; keep trying on every poll.
                self._warn(TOKEN_PATH, "instance metadata token request failed: %s", exc)
            self._set_enabled(True)
            return True
        self._set_enabled(False, because=refused)
        return False

    def poll(self) -> TerminationNotice | None:
        """The most urgent current notice, or None; never raises."""
        if not self._probed:
            self.probe()
        if not self._enabled:
            return None
        now = self._clock()
        notices: list[TerminationNotice] = []
        for path, parse in _NOTICE_PATHS:
            try:
                body = self._get(path)
            except _Unanswered as exc:
                self._warn(path, "instance metadata %s: %s", path, exc)
                break
            except _Failed as exc:
                self._warn(path, "instance metadata %s: %s", path, exc)
                continue
            if body is None:
                continue
            try:
                notice = parse(body, now)
            except MalformedNotice as exc:
                self._warn(path, "instance metadata %s: ignoring malformed body: %s", path, exc)
                continue
            if notice is not None:
                notices.append(notice)
        return most_urgent(notices)

    def instance_id(self) -> str | None:
        """This instance's id, or None off EC2 or when IMDS does not answer."""
        return self._read(INSTANCE_ID_PATH)

    def region(self) -> str | None:
        """This instance's region, or None off EC2 or when IMDS does not answer."""
        return self._read(REGION_PATH)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> ImdsTerminationNoticeSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImdsTerminationNoticeSource({self.endpoint!r}, enabled={self._enabled})"

    def _read(self, path: str) -> str | None:
        if not self._probed:
            self.probe()
        if not self._enabled:
            return None
        try:
            body = self._get(path)
        except (_Unanswered, _Failed) as exc:
            self._warn(path, "instance metadata %s: %s", path, exc)
            return None
        if body is None or not body.strip():
            return None
        return body.strip()

    def _get(self, path: str) -> str | None:
        """The body at `path`, None on 404; one retry with a fresh token on 401."""
        response = self._request("GET", path, headers={TOKEN_HEADER: self._current_token()})
        if response.status_code == 401:
            # The token expired early or IMDS restarted: a new token, one retry.
            response = self._request("GET", path, headers={TOKEN_HEADER: self._fresh_token()})
            if response.status_code == 401:
                raise _Failed("401 Unauthorized even with a new token")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _Failed(f"HTTP {response.status_code}")
        return response.text

    def _current_token(self) -> str:
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_renew_at:
                return self._token
        return self._fresh_token()

    def _fresh_token(self) -> str:
        with self._token_lock:
            self._token = None
            # Renew at 80 % of the ttl so a token never expires between check and use.
            renew_at = time.monotonic() + 0.8 * self.token_ttl_s
            response = self._request("PUT", TOKEN_PATH, headers={TTL_HEADER: str(self.token_ttl_s)})
            status = response.status_code
            if status != 200 or not response.text.strip():
                no_tokens = (400 <= status < 500 and status != 429) or status == 501
                raise (_NoTokens if no_tokens else _Failed)(f"token request answered HTTP {status}")
            self._token = response.text.strip()
            self._token_renew_at = renew_at
            return self._token

    def _request(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        try:
            return self._client.request(method, path, headers=headers)
        except httpx.HTTPError as exc:
            reason = next(text for kind, text in _TRANSPORT_ERRORS if isinstance(exc, kind))
            error = _Unanswered if isinstance(exc, httpx.TransportError) else _Failed
            raise error(f"{reason} ({type(exc).__name__}: {exc})") from exc

    def _set_enabled(self, enabled: bool, *, because: Exception | None = None) -> None:
        was_enabled, self._enabled, self._probed = self._enabled, enabled, True
        if was_enabled and not enabled:
            why = f" ({because})" if because is not None else ""
            self._log.info(
                "no instance metadata service at %s%s: termination notices disabled",
                self.endpoint,
                why,
            )
        elif enabled and not was_enabled:
            self._log.info(
                "instance metadata service at %s answers: termination notices enabled",
                self.endpoint,
            )

    def _warn(self, key: str, message: str, *args: object) -> None:
        # A broken IMDS is polled every few seconds; one line per path per interval is enough.
        now = time.monotonic()
        last = self._last_warned.get(key)
        if last is not None and now - last < self.warn_interval_s:
            return
        self._last_warned[key] = now
        self._log.warning(message, *args)
