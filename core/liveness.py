"""Worker heartbeats and the sweep that requeues the jobs of workers that vanished: the
recovery contract between the workers (who beat and sweep) and the autoscaler (who sweeps too,
and recovers the workers of instances that left their groups).

Heartbeats live in one sorted set scored by the Redis server's clock (never the instances'), so a
sweep finds dead workers with one ZRANGEBYSCORE however large the fleet. Each worker's in-flight
job is one field of a hash, and the instance it runs on another (the autoscaler reads both to
find idle instances and to recover the jobs of an instance that left its group).

A sweeper claims a dead worker by moving its heartbeat to now (only one caller can: the score is
checked and moved in one script), hands its job back through the WATCHed transaction in
`fleetkit.core.handback`, and only then forgets it. A sweeper killed half-way leaves the claim to
expire after one TTL, when the next sweep takes the worker again: no job drops out of tracking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis
from rq.job import Job

from fleetkit.core.handback import Outcome, hand_back
from fleetkit.core.redis_io import text
from fleetkit.core.schema import KEYS, RedisSchema

__all__ = ["HEARTBEAT_TTL_S", "Liveness", "Recovered"]

log = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME') return tonumber(t[1]) + tonumber(t[2]) / 1000000"
_BEAT = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
return 1
"""
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now - tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
"""
_DEAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, 100)
"""


# A worker whose heartbeat is older than this is dead. Workers and every sweeper (the
# autoscaler's included) must agree: a sweeper with a shorter TTL takes live workers for dead.
HEARTBEAT_TTL_S = 10.0


@dataclass(frozen=True)
class Recovered:
    worker: str
    job_id: str
    outcome: Outcome


class Liveness:
    """Heartbeats, in-flight jobs and the sweep, for every worker sharing one Redis."""

    def __init__(
        self, connection: Redis, *, ttl_s: float = HEARTBEAT_TTL_S, keys: RedisSchema = KEYS
    ) -> None:
        self.connection = connection
        self.ttl_s = ttl_s
        self.keys = keys
        self._beat = connection.register_script(_BEAT)
        self._claim = connection.register_script(_CLAIM)
        self._dead = connection.register_script(_DEAD)
        self._now = connection.register_script(_NOW)

    def beat(self, worker: str, instance: str | None = None) -> None:
        """Mark the worker alive now, and (when known) the instance it runs on."""
        self._beat(keys=[self.keys.heartbeats, self.keys.instances], args=[worker, instance or ""])

    def forget(self, worker: str) -> None:
        """A clean exit: nothing of this worker is left to recover."""
        with self.connection.pipeline() as pipe:
            pipe.zrem(self.keys.heartbeats, worker)
            pipe.hdel(self.keys.inflight, worker)
            pipe.hdel(self.keys.instances, worker)
            pipe.execute()

    def dead_workers(self) -> list[str]:
        raw = self._dead(keys=[self.keys.heartbeats], args=[self.ttl_s])
        return [text(w) for w in raw]

    def claim(self, worker: str) -> bool:
        """Take a dead worker for recovery; False when it is alive or someone else took it."""
        return bool(self._claim(keys=[self.keys.heartbeats], args=[worker, self.ttl_s]))

    def recover(
        self,
        worker: str,
        *,
        reason: str,
        max_hard_kills: int,
        job_class: type[Job] = Job,
        hard_kill: bool = True,
    ) -> Recovered | None:
        """Hand back the in-flight job of a worker known to be dead, then forget the worker.

        The records go only after the hand back, so a recoverer dying half-way leaves them for
        the next one. `hard_kill`: the death counts towards the job's limit (a worker that
        stopped for a Redis outage does not).
        """
        raw = self.connection.hget(self.keys.inflight, worker)
        recovered = None
        if raw is not None:
            job_id = text(raw)
            outcome = hand_back(
                self.connection,
                job_id,
                reason=reason,
                only_from_worker=worker,
                hard_kill=hard_kill,
                max_hard_kills=max_hard_kills,
                job_class=job_class,
                allow_queued=True,  # dequeued, not yet started when it died
            )
            if outcome is not Outcome.SKIPPED:
                log.warning("recovered job %s of dead worker %s: %s", job_id, worker, outcome)
                recovered = Recovered(worker, job_id, outcome)
        self.forget(worker)
        return recovered

    def sweep(
        self,
        *,
        max_hard_kills: int,
        job_class: type[Job] = Job,
        dead: list[str] | None = None,
    ) -> list[Recovered]:
        """Requeue the in-flight job of every worker whose heartbeat expired.

        `dead`: `dead_workers()` as the caller just read it (each one is claimed again anyway).
        """
        recovered: list[Recovered] = []
        for worker in self.dead_workers() if dead is None else dead:
            # Whoever claims the heartbeat owns the recovery; everyone else moves on.
            if not self.claim(worker):
                continue
            found = self.recover(
                worker,
                reason=f"worker {worker} stopped heartbeating (hard kill or lost instance)",
                max_hard_kills=max_hard_kills,
                job_class=job_class,
            )
            if found is not None:
                recovered.append(found)
        return recovered
