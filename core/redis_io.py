"""Redis at the boundary: replies decoded to text, redis-py's errors translated into ours, and
the clients and start-up wait of programs that must not hang on a Redis that is away.

One table turns redis-py's exception classes into what an error line says (the first match
wins, so subclasses come before their bases), as `worker.imds` does for httpx's transport errors.
Every module that talks to Redis raises through `redis_errors` or describes with `describe`;
`unreachable` tells an outage (worth waiting for) from a refusal (a wrong password is not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from redis import Redis, exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleetkit.core.errors import FleetkitError, RedisUnavailable
from fleetkit.core.waiting import wait_until_reachable

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "decoded",
    "describe",
    "fail_fast_client",
    "redis_error",
    "redis_errors",
    "text",
    "unreachable",
    "wait_for_redis",
    "where",
]

_ERRORS: tuple[tuple[type[exceptions.RedisError], str], ...] = (
    (exceptions.AuthenticationError, "authentication failed"),
    (exceptions.BusyLoadingError, "is still loading its data"),
    (exceptions.ReadOnlyError, "is read-only (a replica?)"),
    (exceptions.TimeoutError, "timed out"),
    (exceptions.ConnectionError, "cannot be reached"),
    (exceptions.ResponseError, "refused the command"),
    (exceptions.RedisError, "failed"),
)


def text(value: bytes | str) -> str:
    """A reply as text, whether or not the client was built with decode_responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decoded(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash reply as text keys and values (one type check for the whole hash)."""
    if raw and isinstance(next(iter(raw)), bytes):
        return {k.decode(): v.decode() for k, v in raw.items()}
    return {str(k): str(v) for k, v in raw.items()}


def describe(exc: exceptions.RedisError) -> str:
    """`timed out (TimeoutError: Timeout reading from socket)`: one line, whatever the error."""
    reason = next(words for kind, words in _ERRORS if isinstance(exc, kind))
    detail = " ".join(str(exc).split()) or "no detail"
    return f"{reason} ({type(exc).__name__}: {detail})"


def redis_error(
    exc: exceptions.RedisError, doing: str, *, error: type[FleetkitError] = RedisUnavailable
) -> FleetkitError:
    """redis-py's exception as one of ours: `<doing>: <reason> (<class>: <detail>)`."""
    return error(f"{doing}: {describe(exc)}")


@contextmanager
def redis_errors(doing: str, *, error: type[FleetkitError] = RedisUnavailable) -> Iterator[None]:
    """Raise redis-py's errors as `error("<doing>: <reason> (<class>: <detail>)")`.

    `doing` names Redis and what was being done: "cannot read queues from Redis".

    `error` lets a package raise its own subclass (the autoscaler's `SourceUnavailable`) while
    the wording stays the same everywhere.
    """
    try:
        yield
    except exceptions.RedisError as exc:
        raise redis_error(exc, doing, error=error) from exc


def unreachable(exc: BaseException | None) -> bool:
    """Whether a Redis error means Redis could not be reached (an outage, worth waiting for)
    rather than that it answered and refused (a wrong password, a read-only replica)."""
    return isinstance(exc, exceptions.ConnectionError | exceptions.TimeoutError) and not isinstance(
        exc, exceptions.AuthenticationError
    )


def where(redis_url: str) -> str:
    """Where a Redis URL points, without its credentials: `10.0.0.5:6379/0`."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    database = parts.path.strip("/") or "0"
    return f"{host}:{port}/{database}"


def fail_fast_client(redis_url: str, *, timeout_s: float = 1.0, retries: int = 0) -> Redis:
    """A client that answers at once when Redis is away instead of retrying for seconds."""
    return Redis.from_url(
        redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), retries),
    )


def wait_for_redis(
    client: Redis,
    redis_url: str,
    *,
    say: Callable[[str], None],
    console: Console | None = None,
) -> None:
    """Until `client` answers a PING: one "waiting for Redis" line meanwhile (a spinner on a
    terminal console), RedisUnavailable after the start timeout, and at once when Redis
    answers but refuses (a wrong password or database)."""

    def ping() -> None:
        with redis_errors(f"cannot reach Redis at {where(redis_url)}"):
            client.ping()

    wait_until_reachable(
        "Redis", ping, say=say, console=console, retryable=lambda exc: unreachable(exc.__cause__)
    )
