"""Redis outages, as a worker process and its supervisor see them: said once, not per retry.

A worker process keeps retrying through an outage (its beacon beats again, rq's dequeue loop
reconnects) and says so in two lines at INFO, `RedisOutage`: one when it begins, one when it
ends. rq logs every failed reconnect, and the traceback of the Redis error that stopped its loop:
`RedisOutage` is also a filter on rq's logger that drops those records, the first one beginning
the outage. A process that stops on a Redis error exits with `REDIS_UNREACHABLE_EXIT`; its
supervisor, which says the outage once for the instance (at WARNING), starts it again when Redis
answers instead of respawning it into the same error.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

from redis import Redis, exceptions
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from fleetkit.core.redis_io import describe
from fleetkit.core.waiting import Outage

__all__ = ["REDIS_UNREACHABLE_EXIT", "RQ_LOGGER", "RedisOutage", "probe_client", "where"]

log = logging.getLogger(__name__)

# EX_TEMPFAIL: the worker stopped because Redis could not be reached; try again later.
REDIS_UNREACHABLE_EXIT = 75
RQ_LOGGER = "rq.worker"
# rq's only Redis complaint that carries no exception ("Redis connection timeout, quitting").
_RQ_TIMEOUT = "Redis connection timeout"
_UNREACHABLE = (exceptions.ConnectionError, exceptions.TimeoutError)  # and their subclasses


def where(redis_url: str) -> str:
    """Where a Redis URL points, without its credentials: `10.0.0.5:6379/0`."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    database = parts.path.strip("/") or "0"
    return f"{host}:{port}/{database}"


def probe_client(redis_url: str) -> Redis:
    """A client that answers fast when Redis is away (1 s timeouts, no retries): for PINGs."""
    return Redis.from_url(
        redis_url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


class RedisOutage(logging.Filter):
    """One worker process's Redis outages; thread-safe (the beacon, rq's pub/sub thread and
    the main thread all report); a logging filter for rq's logger."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self._outage = Outage(f"worker {worker}: Redis", log, level=logging.INFO)
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the last word from Redis was a failure."""
        return self._outage.down

    def failed(self, error: RedisError | str) -> None:
        """A Redis call failed: the outage begins (one line), or goes on (none)."""
        detail = describe(error) if isinstance(error, RedisError) else error
        with self._lock:
            self._outage.failed(detail)

    def recovered(self) -> None:
        """A Redis call succeeded: the outage, if any, ends (one line)."""
        if self._outage.down:
            with self._lock:
                self._outage.recovered()

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop rq's records of a Redis failure, counting them towards the outage."""
        error = _redis_error_in(record)
        if error is not None:
            self.failed(error)
            return False
        if isinstance(record.msg, str) and _RQ_TIMEOUT in record.msg:
            self.failed("timed out")
            return False
        return True


def _redis_error_in(record: logging.LogRecord) -> RedisError | None:
    """The connection failure a record reports, if any (a refused command is no outage)."""
    if record.exc_info and isinstance(record.exc_info[1], _UNREACHABLE):
        return record.exc_info[1]
    arguments = record.args if isinstance(record.args, tuple) else ()
    return next((a for a in arguments if isinstance(a, _UNREACHABLE)), None)
