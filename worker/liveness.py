"""Worker heartbeats and the recovery sweep that requeues the jobs of workers that vanished.

Heartbeats live in one sorted set scored by the Redis server's clock (never the instances'), so a
sweep finds dead workers with one ZRANGEBYSCORE however large the fleet. Each worker's in-flight
job is one field of a hash, and the instance it runs on another (the autoscaler reads both to
find idle instances and to recover the jobs of an instance that left its group).

A sweeper claims a dead worker by moving its heartbeat to now (only one caller can: the score is
checked and moved in one script), hands its job back through the WATCHed transaction in
`worker.handback`, and only then forgets it. A sweeper killed half-way leaves the claim to expire
after one TTL, when the next sweep takes the worker again: no job drops out of tracking.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job

from fleetkit.worker.handback import Outcome, hand_back

__all__ = ["Beacon", "Liveness", "Recovered", "decode"]

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


def decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Recovered:
    worker: str
    job_id: str
    outcome: Outcome


class Liveness:
    """Heartbeats, in-flight jobs and the sweep, for every worker sharing one Redis."""

    def __init__(self, connection: Redis, *, ttl_s: float, prefix: str = "fleetkit") -> None:
        self.connection = connection
        self.ttl_s = ttl_s
        self.heartbeats_key = f"{prefix}:heartbeats"
        self.inflight_key = f"{prefix}:inflight"
        self.instances_key = f"{prefix}:instances"
        self._beat = connection.register_script(_BEAT)
        self._claim = connection.register_script(_CLAIM)
        self._dead = connection.register_script(_DEAD)
        self._now = connection.register_script(_NOW)

    def beat(self, worker: str, instance: str | None = None) -> None:
        """Mark the worker alive now, and (when known) the instance it runs on."""
        self._beat(keys=[self.heartbeats_key, self.instances_key], args=[worker, instance or ""])

    def forget(self, worker: str) -> None:
        """A clean exit: nothing of this worker is left to recover."""
        with self.connection.pipeline() as pipe:
            pipe.zrem(self.heartbeats_key, worker)
            pipe.hdel(self.inflight_key, worker)
            pipe.hdel(self.instances_key, worker)
            pipe.execute()

    def dead_workers(self) -> list[str]:
        raw = self._dead(keys=[self.heartbeats_key], args=[self.ttl_s])
        return [decode(w) for w in raw]

    def claim(self, worker: str) -> bool:
        """Take a dead worker for recovery; False when it is alive or someone else took it."""
        return bool(self._claim(keys=[self.heartbeats_key], args=[worker, self.ttl_s]))

    def recover(
        self, worker: str, *, reason: str, max_hard_kills: int, job_class: type[Job] = Job
    ) -> Recovered | None:
        """Hand back the in-flight job of a worker known to be dead, then forget the worker.

        The records go only after the hand back, so a recoverer dying half-way leaves them for
        the next one.
        """
        raw = self.connection.hget(self.inflight_key, worker)
        recovered = None
        if raw is not None:
            job_id = decode(raw)
            outcome = hand_back(
                self.connection,
                job_id,
                reason=reason,
                only_from_worker=worker,
                hard_kill=True,
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


class Beacon(threading.Thread):
    """Beats for one worker and sweeps for everyone, on its own Redis connection.

    A thread rather than rq's own heartbeat: a non-forking worker runs jobs in its main thread
    and would not beat at all during a long job.
    """

    def __init__(
        self,
        redis_url: str,
        worker: str,
        *,
        ttl_s: float,
        interval_s: float,
        sweep_interval_s: float,
        max_hard_kills: int,
        job_class: type[Job] = Job,
        on_recovered: Callable[[list[Recovered]], None] | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__(name=f"beacon-{worker}", daemon=True)
        self.instance = instance
        self.connection = Redis.from_url(redis_url, socket_timeout=max(interval_s, 1.0))
        self.liveness = Liveness(self.connection, ttl_s=ttl_s)
        self.worker = worker
        self.interval_s = interval_s
        self.sweep_interval_s = sweep_interval_s
        self.max_hard_kills = max_hard_kills
        self.job_class = job_class
        self.on_recovered = on_recovered
        self._halt = threading.Event()

    def start(self) -> None:
        # The first beat is synchronous: a worker killed right after its first dequeue must
        # already be known to the sweep, or its job would have no one to recover it.
        try:
            self.liveness.beat(self.worker, self.instance)
        except RedisError as exc:
            log.warning("first heartbeat to Redis failed (will retry): %s", exc)
        super().start()

    def run(self) -> None:
        next_sweep = 0.0
        elapsed = 0.0
        connected_since: float | None = None
        while not self._halt.is_set():
            try:
                self.liveness.beat(self.worker, self.instance)
                if connected_since is None:
                    connected_since = elapsed
                # After Redis was unreachable every heartbeat looks stale; sweep only once live
                # workers have had a whole TTL to beat again.
                settled = elapsed - connected_since >= self.liveness.ttl_s
                if settled and elapsed >= next_sweep:
                    found = self.liveness.sweep(
                        max_hard_kills=self.max_hard_kills, job_class=self.job_class
                    )
                    if found and self.on_recovered:
                        self.on_recovered(found)
                    # Jitter keeps a fleet's sweeps from landing on Redis all at once.
                    next_sweep = elapsed + self.sweep_interval_s * random.uniform(0.8, 1.2)
            except RedisError as exc:
                connected_since = None
                log.warning("heartbeat to Redis failed (will retry): %s", exc)
            self._halt.wait(self.interval_s)
            elapsed += self.interval_s

    def stop(self) -> None:
        self._halt.set()
