"""`QueueDepthSource` over Redis: rq's queues and registries plus the workers' records.

A read is one pipelined round trip however many queues and workers there are, of a fixed
handful of commands (per-key loops run inside Redis, in small Lua scripts, because redis-py
spends tens of microseconds per pipelined command and per argument): Redis TIME; per queue LLEN
of the queue and ZCARD of rq's started registry (jobs in flight); the ended-job counters
(`fleetkit.core.schema`); the worker → instance map (every worker on record,
whatever its heartbeat says); which of those workers runs a job — rq's `current_job` field (set
when a job starts, deleted when it ends) or fleetkit's in-flight record —, read in the same
instant; every pool's hold (MGET).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.worker import Worker

from fleetkit.autoscaler.errors import SourceUnavailable
from fleetkit.autoscaler.holds import parse_hold
from fleetkit.autoscaler.model import Hold, QueueLoad, QueueReading
from fleetkit.autoscaler.rates import RateWindow
from fleetkit.core.redis_io import decoded, redis_errors, text
from fleetkit.core.schema import KEYS

__all__ = ["DEFAULT_RATE_WINDOW_S", "RqQueueDepthSource"]

log = logging.getLogger(__name__)

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
# Busy: rq's current job (set at start, deleted at end) or fleetkit's in-flight record (set
# before rq's, deleted when the job ends or is handed back). The worker names come from the
# instances hash inside Redis, so the request stays the same size however large the fleet.
_BUSY = """
local busy = {}
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('HEXISTS', ARGV[1] .. name, 'current_job') == 1
     or redis.call('HEXISTS', KEYS[2], name) == 1 then
    busy[#busy + 1] = name
  end
end
return busy
"""


@dataclass(frozen=True)
class _Snapshot:
    """The read's one round trip, decoded."""

    now: float
    depths: dict[str, tuple[int, int]]  # queue → (queued, in flight)
    stats: dict[str, str]
    instances: dict[str, str]
    busy_workers: list[str]
    raw_holds: dict[str, tuple[str, bytes | str | None]]  # pool → (key, value)


class RqQueueDepthSource:
    """What rq's queues hold per pool, and which instances run a job, in one round trip."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        rate_window_s: float | Mapping[str, float] = DEFAULT_RATE_WINDOW_S,
        env: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`rate_window_s` may be given per pool (pools missing from it get the default).

        `clock` replaces Redis's clock for the rates only (tests); heartbeats are always judged
        by Redis's clock, the one that scored them.
        """
        self.connection = connection
        self.rate_window_s = rate_window_s
        self.env = env
        self.clock = clock
        self._windows: dict[str, RateWindow] = {}

    def read(self, pools: Mapping[str, Sequence[str]]) -> QueueReading:
        """`pools` maps each pool to its queue names. Raises SourceUnavailable."""
        # Redis errors become ours here, worded by core's one table: callers handle
        # SourceUnavailable alone.
        with redis_errors("cannot read queues from Redis", error=SourceUnavailable):
            snap = self._snapshot(pools)
        # Every worker still on record counts, live or not: one whose heartbeat merely lags
        # may be running a job, and a dead one is forgotten by the sweep within a TTL.
        placed = snap.instances
        busy = {placed[name] for name in snap.busy_workers if name in placed}
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
        env = self.env
        hold_keys = {p: KEYS.hold(env, p) for p in pools} if env is not None else {}
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
            pipe.hgetall(KEYS.queue_stats)
            pipe.hgetall(KEYS.instances)
            pipe.eval(_BUSY, 2, KEYS.instances, KEYS.inflight, Worker.redis_worker_namespace_prefix)
            if hold_keys:
                pipe.mget(list(hold_keys.values()))
            replies = iter(pipe.execute())
        seconds, micros = next(replies)
        counts = iter(next(replies) if depth_keys else [])
        depths = {q: (int(next(counts)), int(next(counts))) for q in queues}
        stats = decoded(next(replies))
        instances = decoded(next(replies))
        busy_workers = [text(name) for name in next(replies)]
        held = next(replies) if hold_keys else []
        raw_holds = {
            pool: (key, value) for (pool, key), value in zip(hold_keys.items(), held, strict=True)
        }
        return _Snapshot(
            seconds + micros / 1_000_000, depths, stats, instances, busy_workers, raw_holds
        )

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
