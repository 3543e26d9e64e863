"""`make bench-autoscaler`: the cost of one daemon tick, AWS excluded.

A private redis-server holds 100 queues (20 pools of 5) with jobs, started registries, per-queue
counters, and N worker records (heartbeat, instance, rq worker hash; half of them busy). The
daemon ticks with the real Redis source, leader lock, decision records and dead-worker sweep;
the capacity provider is the in-memory one, so no AWS call is timed. Reported: tick time
percentiles at 1,000 workers, and Redis round trips per tick for 10, 100 and 1,000 workers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis
from redis.connection import AbstractConnection
from rq import Queue

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.jobs import noop  # noqa: E402
from fleetkit.autoscaler.daemon import Autoscaler  # noqa: E402
from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider  # noqa: E402
from fleetkit.autoscaler.leader import LeaderLock  # noqa: E402
from fleetkit.autoscaler.metrics import AutoscalerMetrics  # noqa: E402
from fleetkit.autoscaler.policy import QueueDrainPolicy  # noqa: E402
from fleetkit.autoscaler.rq_source import RqQueueDepthSource  # noqa: E402
from fleetkit.core.environment import Environment  # noqa: E402
from fleetkit.core.schema import KEYS  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

POOLS = 20
QUEUES_PER_POOL = 5
PROCESSES_PER_INSTANCE = 2


class RoundTrips:
    """Counts commands and pipelines sent to Redis (one send = one round trip)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = AbstractConnection.send_packed_command

    def __enter__(self) -> RoundTrips:
        original = self._original

        def counting(conn: AbstractConnection, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]


def environment() -> Environment:
    pools = {
        f"pool-{p}": {
            "queues": [f"q{p}-{q}" for q in range(QUEUES_PER_POOL)],
            "instance_types": ["t3.small"],
            "ami": "ami-0123456789abcdef0",
            "processes_per_instance": PROCESSES_PER_INSTANCE,
            "max_size": 500,
        }
        for p in range(POOLS)
    }
    return Environment.model_validate({"name": "bench", "region": "us-east-1", "pools": pools})


def populate(
    redis: Redis, env: Environment, provider: InMemoryCapacityProvider, workers: int
) -> None:
    redis.flushall()
    with redis.pipeline() as pipe:
        for pool in env.pools.values():
            for name in pool.queues:
                queue = Queue(name, connection=redis)
                for _ in range(10):
                    queue.enqueue(noop, 0, pipeline=pipe)
                pipe.hincrby(KEYS.queue_stats, f"{name}:done", 100)
                pipe.hincrbyfloat(KEYS.queue_stats, f"{name}:seconds", 250.0)
        pipe.execute()
    per_pool = max(1, workers // PROCESSES_PER_INSTANCE // len(env.pools))
    names = list(env.pools)
    for name in names:
        groups = provider.read()[name]
        provider.set_desired(groups.spot, per_pool)
    instances = [i.id for name in names for i in provider.read()[name].spot.instances]
    with redis.pipeline() as pipe:
        for n in range(workers):
            worker = f"fleet.bench.{n}"
            instance = instances[n // PROCESSES_PER_INSTANCE % len(instances)]
            pipe.hset(KEYS.instances, worker, instance)
            pipe.zadd(KEYS.heartbeats, {worker: time.time() + 3600})
            if n % 2:
                pipe.hset(f"rq:worker:{worker}", "current_job", f"job-{n}")
        pipe.set(KEYS.hold(env.name, names[0]), json.dumps({"count": 1, "until": None}))
        pipe.execute()


class TickClock:
    """The daemon's clock, one interval further at each tick.

    Ticking back to back on the wall clock would pack every tick of the run into one
    stabilization window, so the policy's memory would grow with the run (hundreds of entries
    to keep, serialize and store per pool) as it never does in service, where a window holds
    `stabilization_window_s / interval_s` ticks.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += self.interval_s


def build(
    redis: Redis, env: Environment, provider: InMemoryCapacityProvider, clock: TickClock
) -> Autoscaler:
    source = RqQueueDepthSource(redis, env=env.name)
    return Autoscaler(
        env,
        connection=redis,
        source=source,
        provider=provider,
        policy=QueueDrainPolicy(),
        lock=LeaderLock(redis, env.name, ttl_s=30),
        metrics=AutoscalerMetrics(interval_s=10),
        clock=clock,
    )


def measure(redis: Redis, workers: int, ticks: int) -> dict[str, float]:
    env = environment()
    provider = InMemoryCapacityProvider({name: (500, 100) for name in env.pools})
    populate(redis, env, provider, workers)
    clock = TickClock(interval_s=10)
    daemon = build(redis, env, provider, clock)
    # Warm-up: the lock, Lua scripts, rate windows, the memory load, and a whole window of
    # ticks so that the policy's memory is as full as it gets in service.
    for _ in range(40):
        clock.advance()
        daemon.tick()
    timings = []
    with RoundTrips() as trips:
        for _ in range(ticks):
            clock.advance()
            began = time.perf_counter()
            report = daemon.tick()
            timings.append((time.perf_counter() - began) * 1000)
            assert report.leader and not report.errors, report.errors
        per_tick = trips.count / ticks
    # Inclusive: the run's ticks are the whole population measured, its fastest and slowest
    # the ends of the scale (p50 is the median).
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return {
        "workers": workers,
        "queues": POOLS * QUEUES_PER_POOL,
        "ticks": ticks,
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "max_ms": round(max(timings), 2),
        "round_trips_per_tick": round(per_tick, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetkit-bench-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            redis = Redis.from_url(server.url)
            results = [measure(redis, workers, args.ticks) for workers in (10, 100, 1000)]
        finally:
            server.stop()
    print("| workers | queues | tick p50 ms | tick p95 ms | tick max ms | Redis round trips/tick |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['workers']:,} | {r['queues']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['max_ms']} | {r['round_trips_per_tick']:g} |"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
