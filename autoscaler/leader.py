"""The leader lock: of several daemons on one environment, exactly one acts.

One Redis key holds `<owner>:<epoch>` with an expiry. Acquiring bumps the epoch (a fencing token
that only grows), renewing extends the expiry only while the value is still ours, and every
write the leader makes goes through `fenced`, which checks the value in the same script. A
daemon that stalled past its TTL finds the value changed and stops; its stale writes to Redis
are refused. Calls to AWS are checked immediately before each batch, which narrows a stale
leader to at most the call already in flight.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from redis import Redis
from redis.exceptions import RedisError

from fleetkit.autoscaler.errors import NotLeader, SourceUnavailable
from fleetkit.core.redis_io import describe, redis_errors, text
from fleetkit.core.schema import KEYS, RedisSchema

__all__ = ["LeaderLock"]

log = logging.getLogger(__name__)

_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return held
end
if held then return false end
local epoch = redis.call('INCR', KEYS[2])
local value = ARGV[3] .. ':' .. epoch
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""
_FENCED_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i]) end
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLock:
    """An expiring, renewed, fenced lock in Redis."""

    def __init__(
        self,
        connection: Redis,
        env: str,
        ttl_s: float,
        owner: str | None = None,
        keys: RedisSchema = KEYS,
    ) -> None:
        self.connection = connection
        self.key = keys.leader(env)
        self.epoch_key = keys.leader_epoch(env)
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.owner = owner or f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        self.token: str | None = None
        self._acquire = connection.register_script(_ACQUIRE)
        self._fenced_set = connection.register_script(_FENCED_SET)
        self._release = connection.register_script(_RELEASE)

    @property
    def epoch(self) -> int | None:
        return int(self.token.rsplit(":", 1)[1]) if self.token else None

    def acquire(self) -> bool:
        """Take the lock, or renew it if ours. False when another daemon holds it."""
        try:
            with redis_errors("cannot take the leader lock in Redis", error=SourceUnavailable):
                raw = self._acquire(
                    keys=[self.key, self.epoch_key],
                    args=[self.token or "", self.ttl_ms, self.owner],
                )
        except SourceUnavailable:
            self.token = None  # without Redis nobody can be sure to lead
            raise
        token = text(raw) if raw else None
        if token and token != self.token:
            log.info("leader lock taken: %s", token)
        elif not token and self.token:
            log.warning("leader lock lost to another daemon")
        self.token = token or None
        return self.token is not None

    def check(self) -> None:
        """Raise NotLeader unless the lock is still ours (renewing it)."""
        if not self.acquire():
            raise NotLeader(f"another daemon holds {self.key}")

    def fenced(self, values: dict[str, str]) -> None:
        """SET these keys only if the lock is still ours, atomically with the check."""
        if self.token is None:
            raise NotLeader(f"not holding {self.key}")
        keys = [self.key, *values]
        with redis_errors("cannot write to Redis under the leader lock", error=SourceUnavailable):
            done = self._fenced_set(keys=keys, args=[self.token, *values.values()])
        if not done:
            self.token = None
            raise NotLeader(f"lost {self.key} before writing")

    def release(self) -> None:
        if self.token is None:
            return
        try:
            self._release(keys=[self.key], args=[self.token])
        except RedisError as exc:
            log.warning("could not release the leader lock (it expires anyway): %s", describe(exc))
        self.token = None
