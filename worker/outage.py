"""Redis outages, as a worker process and its supervisor see them: said once, not per retry.

The supervisor says an outage once for the instance, at WARNING: one line when it begins, one
when it ends. A worker process keeps retrying through it (its beacon beats again, rq's dequeue
loop reconnects) and records it in `RedisOutage` at DEBUG only. rq logs every failed reconnect,
and the traceback of the Redis error that stopped its loop: `RedisOutage` is also a filter on
rq's logger that drops those records, the first one beginning the outage. Only a Redis that
cannot be reached is an outage (`core.redis_io.unreachable`): a refusal (read-only replica, out
of memory, a missing permission) is logged as the error it is.

A process that stops because Redis cannot be reached exits with `REDIS_UNREACHABLE_EXIT`; the
supervisor starts it again when Redis answers instead of respawning it into the same error.
"""

from __future__ import annotations

import logging
import os
import threading

from redis.exceptions import RedisError

from fleetkit.core.redis_io import describe, unreachable
from fleetkit.core.waiting import Outage

__all__ = ["REDIS_UNREACHABLE_EXIT", "RQ_LOGGER", "RedisOutage"]

log = logging.getLogger(__name__)

# EX_TEMPFAIL: the worker stopped because Redis could not be reached; try again later.
REDIS_UNREACHABLE_EXIT = 75
RQ_LOGGER = "rq.worker"
# rq's only Redis complaint that carries no exception ("Redis connection timeout, quitting").
_RQ_TIMEOUT = "Redis connection timeout"


class RedisOutage(logging.Filter):
    """One worker process's Redis outages; thread-safe (the beacon, rq's pub/sub thread and
    the main thread all report); a logging filter for rq's logger."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        # DEBUG: the supervisor says the instance's outage once; one line per process is noise.
        self._outage = Outage(f"worker {worker}: Redis", log, level=logging.DEBUG)
        self._lock = threading.Lock()
        # A horse forked while the beacon held the lock would find it held forever.
        os.register_at_fork(after_in_child=self._new_lock)

        self._refusal: str | None = None  # the refusal last said, until a call succeeds

    def _new_lock(self) -> None:
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        """Whether the last word from Redis was a failure."""
        return self._outage.down

    def failed(self, error: RedisError | str) -> None:
        """A Redis call failed: the outage begins (one line), or goes on (none). A Redis that
        answered and refused is no outage: a WARNING, once until a call succeeds again."""
        detail = describe(error) if isinstance(error, RedisError) else error
        with self._lock:
            if isinstance(error, RedisError) and not unreachable(error):
                if detail != self._refusal:
                    self._refusal = detail
                    log.warning("Redis refused a call: %s", detail)
                return
            self._outage.failed(detail)

    def recovered(self) -> None:
        """A Redis call succeeded: the outage, if any, ends (one line)."""
        self._refusal = None
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
    if record.exc_info and unreachable(record.exc_info[1]):
        error = record.exc_info[1]
        return error if isinstance(error, RedisError) else None
    arguments = record.args if isinstance(record.args, tuple) else ()
    return next((a for a in arguments if isinstance(a, RedisError) and unreachable(a)), None)
