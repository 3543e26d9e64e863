"""The beacon: each worker's heartbeat, and the sweep every live worker runs for everyone."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job

from fleetkit.core.liveness import Liveness, Recovered
from fleetkit.worker.outage import RedisOutage

__all__ = ["Beacon"]


class Beacon(threading.Thread):
    """Beats for one worker and sweeps for everyone, on its own Redis connection.

    A thread rather than rq's own heartbeat: a non-forking worker runs jobs in its main thread
    and would not beat at all during a long job. It beats through Redis outages, which `outage`
    reports once each (not every failed beat).
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
        outage: RedisOutage | None = None,
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
        self.outage = outage if outage is not None else RedisOutage(worker)
        self._halt = threading.Event()

    def start(self) -> None:
        # The first beat is synchronous: a worker killed right after its first dequeue must
        # already be known to the sweep, or its job would have no one to recover it.
        try:
            self.liveness.beat(self.worker, self.instance)
        except RedisError as exc:
            self.outage.failed(exc)
        super().start()

    def run(self) -> None:
        next_sweep = 0.0
        elapsed = 0.0
        connected_since: float | None = None
        while not self._halt.is_set():
            try:
                self.liveness.beat(self.worker, self.instance)
                self.outage.recovered()
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
                self.outage.failed(exc)
            self._halt.wait(self.interval_s)
            elapsed += self.interval_s

    def stop(self) -> None:
        self._halt.set()
