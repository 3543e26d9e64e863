"""Redis at the boundary: replies decoded to text, and redis-py's errors translated into ours.

One table turns redis-py's exception classes into what an error line says (the first match
wins, so subclasses come before their bases), as `worker.imds` does for httpx's transport errors.
Every module that talks to Redis raises through `redis_errors` or describes with `describe`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from redis import exceptions

from fleetkit.core.errors import FleetkitError, RedisUnavailable

__all__ = ["decoded", "describe", "redis_error", "redis_errors", "text"]

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
