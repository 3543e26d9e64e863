"""`QueueDepthSource` over Redis: rq's queues and registries plus the workers' heartbeats.

A read costs two pipelined round trips however many queues and workers there are, each of a
fixed handful of commands (per-key loops run inside Redis, in small Lua scripts, because
redis-py spends tens of microseconds per pipelined command):

1. Redis TIME; per queue LLEN of the queue and ZCARD of rq's started registry (jobs in flight);
   the ended-job counters (`worker.fleet_worker.QUEUE_STATS_KEY`); the live workers (heartbeat
   newer than the TTL by Redis's own clock, as the heartbeats are scored); the worker →
   instance map; every pool's hold (MGET).
2. Whether rq's `current_job` field exists for every live worker on a known instance (rq sets
   it when a job starts and deletes it when it ends). Skipped when no such worker is alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import RedisError
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.worker import Worker

from autoscaler.errors import SourceUnavailable
from autoscaler.holds import parse_hold
from autoscaler.model import Hold, QueueLoad, QueueReading
from autoscaler.rates import RateWindow
from worker.fleet_worker import QUEUE_STATS_KEY

__all__ = ["DEFAULT_RATE_WINDOW_S", "HEARTBEATS_KEY", "INSTANCES_KEY", "RqQueueDepthSource"]

log = logging.getLogger(__name__)

# The keys `worker.liveness.Liveness` writes with its default prefix.
HEARTBEATS_KEY = "fleetkit:heartbeats"
INSTANCES_KEY = "fleetkit:instances"
DEFAULT_RATE_WINDOW_S = 60.0

# EVAL rather than a registered script: redis-py loads registered scripts into a pipeline with
# an extra round trip (SCRIPT EXISTS) on every execute.
_DEPTHS = """
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call('LLEN', KEYS[i])
  out[#out + 1] = redis.call('ZCARD', KEYS[i + 1])
end
return out
"""
_BUSY = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HEXISTS', KEYS[i], 'current_job') end
return out
"""
_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
"""


@dataclass(frozen=True)
class _Snapshot:
    """Round trip 1, decoded."""

    now: float
    depths: dict[str, tuple[int, int]]  # queue → (queued, in flight)
    stats: dict[str, str]
    live: list[str]
    instances: dict[str, str]
    raw_holds: dict[str, tuple[str, bytes | str | None]]  # pool → (key, value)


class RqQueueDepthSource:
    """What rq's queues hold per pool, and which instances run a job, in two round trips."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        heartbeat_ttl_s: float,
        rate_window_s: float | Mapping[str, float] = DEFAULT_RATE_WINDOW_S,
        hold_key: Callable[[str], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`rate_window_s` may be given per pool (pools missing from it get the default).

        `clock` replaces Redis's clock for the rates only (tests); heartbeats are always judged
        by Redis's clock, the one that scored them.
        """
        if not heartbeat_ttl_s > 0:
            raise ValueError(f"heartbeat_ttl_s must be positive, got {heartbeat_ttl_s!r}")
        self.connection = connection
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.rate_window_s = rate_window_s
        self.hold_key = hold_key
        self.clock = clock
        self._windows: dict[str, RateWindow] = {}

    def read(self, pools: Mapping[str, Sequence[str]]) -> QueueReading:
        """`pools` maps each pool to its queue names. Raises SourceUnavailable."""
        # The one place Redis errors become ours: callers handle SourceUnavailable alone.
        try:
            snap = self._snapshot(pools)
            placed = {w: snap.instances[w] for w in snap.live if w in snap.instances}
            busy = self._busy(placed)
        except RedisError as exc:
            detail = " ".join(str(exc).split()) or "no detail"
            raise SourceUnavailable(
                f"cannot read queues from Redis: {type(exc).__name__}: {detail}"
            ) from exc
        now = snap.now if self.clock is None else self.clock()
        loads = {pool: self._load(pool, queues, snap, now) for pool, queues in pools.items()}
        for gone in self._windows.keys() - pools.keys():
            del self._windows[gone]  # a pool dropped and re-added starts a fresh window
        by_instance: dict[str, list[str]] = {}
        for name, instance in placed.items():
            by_instance.setdefault(instance, []).append(name)
        return QueueReading(
            loads=loads,
            busy_instances=frozenset(busy),
            workers_by_instance={i: tuple(sorted(ws)) for i, ws in sorted(by_instance.items())},
            holds=_holds(snap.raw_holds),
        )

    def _snapshot(self, pools: Mapping[str, Sequence[str]]) -> _Snapshot:
        queues = sorted({q for names in pools.values() for q in names})
        hold_keys = {p: self.hold_key(p) for p in pools} if self.hold_key is not None else {}
        depth_keys = [
            key
            for queue in queues
            for key in (
                Queue.redis_queue_namespace_prefix + queue,
                StartedJobRegistry.key_template.format(queue),
            )
        ]
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.time()
            if depth_keys:
                pipe.eval(_DEPTHS, len(depth_keys), *depth_keys)
            pipe.hgetall(QUEUE_STATS_KEY)
            pipe.eval(_LIVE, 1, HEARTBEATS_KEY, self.heartbeat_ttl_s)
            pipe.hgetall(INSTANCES_KEY)
            if hold_keys:
                pipe.mget(list(hold_keys.values()))
            replies = iter(pipe.execute())
        seconds, micros = next(replies)
        counts = iter(next(replies) if depth_keys else [])
        depths = {q: (int(next(counts)), int(next(counts))) for q in queues}
        stats = _decoded(next(replies))
        live = [w.decode() if isinstance(w, bytes) else w for w in next(replies)]
        instances = _decoded(next(replies))
        held = next(replies) if hold_keys else []
        raw_holds = {
            pool: (key, value) for (pool, key), value in zip(hold_keys.items(), held, strict=True)
        }
        return _Snapshot(seconds + micros / 1_000_000, depths, stats, live, instances, raw_holds)

    def _busy(self, placed: Mapping[str, str]) -> set[str]:
        # Only workers on a known instance matter: a busy instance is what must not be removed.
        if not placed:
            return set()
        names = sorted(placed)
        keys = [Worker.redis_worker_namespace_prefix + name for name in names]
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.eval(_BUSY, len(keys), *keys)
            (running,) = pipe.execute()
        return {placed[name] for name, job in zip(names, running, strict=True) if job}

    def _load(self, pool: str, queues: Sequence[str], snap: _Snapshot, now: float) -> QueueLoad:
        queued = in_flight = done = 0
        seconds = 0.0
        for queue in dict.fromkeys(queues):  # a queue named twice counts once
            q, f = snap.depths[queue]
            queued += q
            in_flight += f
            done += int(snap.stats.get(f"{queue}:done", 0))
            seconds += float(snap.stats.get(f"{queue}:seconds", 0.0))
        window = self._windows.get(pool)
        if window is None:
            window = self._windows[pool] = RateWindow(self._window_s(pool))
        return window.add(now, queued, in_flight, done, seconds)

    def _window_s(self, pool: str) -> float:
        if isinstance(self.rate_window_s, Mapping):
            return self.rate_window_s.get(pool, DEFAULT_RATE_WINDOW_S)
        return self.rate_window_s


def _decoded(raw: Mapping[Any, Any]) -> dict[str, str]:
    if raw and isinstance(next(iter(raw)), bytes):  # one check, not one per field
        return {k.decode(): v.decode() for k, v in raw.items()}
    return {str(k): str(v) for k, v in raw.items()}


def _holds(raw_holds: Mapping[str, tuple[str, bytes | str | None]]) -> dict[str, Hold]:
    holds: dict[str, Hold] = {}
    for pool, (key, raw) in raw_holds.items():
        if raw is None:
            continue
        try:
            holds[pool] = parse_hold(raw)
        except ValueError as exc:
            # A bad hold must not stop the pool from scaling; it is as if none were set.
            log.warning("ignoring the hold of pool %s at %s: %s", pool, key, exc)
    return holds
