"""Job counters and histograms that many worker processes add to, collected for Prometheus.

prometheus_client's own multiprocess mode wants a shared directory and pid bookkeeping; the
workers already share Redis, so each keeps one hash of counters and the supervisor's collector
reads every worker's hash on each scrape of `/metrics`, with a worker label.

Histogram buckets are stored per bucket (one HINCRBY per observation, not one per bucket) and
made cumulative when rendered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis import Redis
from redis.client import Pipeline

from fleetkit.core.metrics import NAMESPACE
from fleetkit.core.redis_io import text
from fleetkit.core.schema import KEYS, RedisSchema

__all__ = [
    "DURATION_BUCKETS",
    "PICKUP_BUCKETS",
    "WorkerMetrics",
    "WorkerMetricsCollector",
]

INF = math.inf
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, INF,
)  # fmt: skip
PICKUP_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, INF,
)  # fmt: skip

# (hash field, metric name without prefix, help)
_COUNTERS = (
    ("started", "jobs_started", "Jobs a worker picked up."),
    ("finished", "jobs_finished", "Jobs that finished successfully."),
    ("failed", "jobs_failed", "Jobs that failed."),
    ("handed_back", "jobs_handed_back", "Jobs handed back to their queue before a shutdown."),
    ("recovered", "jobs_recovered", "Jobs of dead workers requeued by this worker's sweeps."),
)
# (hash field stem, metric name without prefix, help, buckets)
_HISTOGRAMS = (
    ("duration", "job_duration_seconds", "Time a job ran, finished or failed.", DURATION_BUCKETS),
    ("pickup", "job_pickup_latency_seconds", "Time from enqueue to pickup.", PICKUP_BUCKETS),
)
_NOTICE = "notice:"


def _le(bound: float) -> str:
    # The exposition format's spelling of a bucket bound: "+Inf", "1.0", "0.005".
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class WorkerMetrics:
    """The counters of one worker process, kept in one Redis hash."""

    def __init__(
        self, redis: Redis, worker: str, keys: RedisSchema = KEYS, ttl_s: int = 86400
    ) -> None:
        self.redis = redis
        self.worker = worker
        self.key = keys.metrics(worker)
        self.ttl_s = ttl_s

    def job_started(self, pickup_latency_s: float | None, pipe: Pipeline | None = None) -> None:
        """A job was picked up, `pickup_latency_s` after it was enqueued (None: unknown).

        With `pipe`, the writes join the caller's pipeline (one round trip per job).
        """
        with self._writing(pipe) as writer:
            writer.hincrby(self.key, "started", 1)
            if pickup_latency_s is not None:
                # Enqueuer and worker clocks differ: a small negative latency means "at once".
                _observe(writer, self.key, "pickup", PICKUP_BUCKETS, max(0.0, pickup_latency_s))

    def job_finished(self, duration_s: float, pipe: Pipeline | None = None) -> None:
        """A job finished successfully after running `duration_s`."""
        self._ended("finished", duration_s, pipe)

    def job_failed(self, duration_s: float, pipe: Pipeline | None = None) -> None:
        """A job failed after running `duration_s`."""
        self._ended("failed", duration_s, pipe)

    def job_handed_back(self) -> None:
        """A job was handed back to its queue because the instance is going away."""
        self._count("handed_back", 1)

    def jobs_recovered(self, n: int) -> None:
        """`n` jobs of dead workers were requeued."""
        if n > 0:
            self._count("recovered", n)

    def notice_seen(self, kind: str) -> None:
        """A termination notice of this kind (spot, rebalance, lifecycle...) was seen."""
        self._count(f"{_NOTICE}{kind}", 1)

    def _ended(self, field: str, duration_s: float, pipe: Pipeline | None) -> None:
        with self._writing(pipe) as writer:
            writer.hincrby(self.key, field, 1)
            _observe(writer, self.key, "duration", DURATION_BUCKETS, max(0.0, duration_s))

    @contextmanager
    def _writing(self, pipe: Pipeline | None) -> Iterator[Pipeline]:
        if pipe is not None:
            yield pipe
            pipe.expire(self.key, self.ttl_s)
            return
        with self._pipe() as own:
            yield own
            self._commit(own)

    def _count(self, field: str, n: int) -> None:
        with self._pipe() as pipe:
            pipe.hincrby(self.key, field, n)
            self._commit(pipe)

    def _pipe(self) -> Pipeline:
        # MULTI/EXEC: a scrape never sees a bucket counted without its _count and _sum.
        return self.redis.pipeline(transaction=True)

    def _commit(self, pipe: Pipeline) -> None:
        pipe.expire(self.key, self.ttl_s)
        pipe.execute()


def _observe(pipe: Pipeline, key: str, stem: str, buckets: Sequence[float], value: float) -> None:
    bound = next(b for b in buckets if value <= b)
    pipe.hincrby(key, f"{stem}_bucket:{_le(bound)}", 1)
    pipe.hincrbyfloat(key, f"{stem}_sum", value)
    pipe.hincrby(key, f"{stem}_count", 1)


class WorkerMetricsCollector:
    """Every listed worker's hash as metric families labelled by worker, read from Redis on each
    scrape (one pipelined round trip), plus the instance-wide gauges.

    Registered in a `CollectorRegistry` that the health server serves; `workers` and `gauges`
    are asked at each scrape, since workers come and go.
    """

    def __init__(
        self,
        redis: Redis,
        workers: Callable[[], Sequence[str]],
        gauges: Callable[[], Mapping[str, float]] = dict,
        keys: RedisSchema = KEYS,
    ) -> None:
        self.redis = redis
        self.workers = workers
        self.gauges = gauges
        self.keys = keys

    def registry(self) -> CollectorRegistry:
        """A registry holding just this collector (described on scrape, not at registration)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    def collect(self) -> Iterable[Metric]:
        workers = list(self.workers())
        with self.redis.pipeline(transaction=False) as pipe:
            for worker in workers:
                pipe.hgetall(self.keys.metrics(worker))
            raw: list[dict[Any, Any]] = pipe.execute()
        hashes = {
            worker: {text(k): text(v) for k, v in fields.items()}
            for worker, fields in zip(workers, raw, strict=True)
        }
        yield from _families(hashes, self.gauges())


def _families(
    hashes: Mapping[str, Mapping[str, str]], extra_gauges: Mapping[str, float]
) -> Iterator[Metric]:
    p = NAMESPACE
    for field, name, doc in _COUNTERS:
        counter = CounterMetricFamily(f"{p}_{name}", doc, labels=["worker"])
        for worker, fields in hashes.items():
            counter.add_metric([worker], float(fields.get(field, 0)))
        yield counter

    notices = CounterMetricFamily(
        f"{p}_termination_notices", "Termination notices seen.", labels=["worker", "kind"]
    )
    for worker, fields in hashes.items():
        for field, value in sorted(fields.items()):
            if field.startswith(_NOTICE):
                notices.add_metric([worker, field[len(_NOTICE) :]], float(value))
    yield notices

    for stem, name, doc, buckets in _HISTOGRAMS:
        histogram = HistogramMetricFamily(f"{p}_{name}", doc, labels=["worker"])
        for worker, fields in hashes.items():
            cumulative = 0.0
            rendered: list[tuple[str, float]] = []
            for bound in buckets:
                cumulative += float(fields.get(f"{stem}_bucket:{_le(bound)}", 0))
                rendered.append((_le(bound), cumulative))
            histogram.add_metric([worker], rendered, float(fields.get(f"{stem}_sum", 0)))
        yield histogram

    for gauge_name, level in sorted(extra_gauges.items()):
        gauge = GaugeMetricFamily(f"{p}_{gauge_name}", f"{gauge_name} (instance-wide).")
        gauge.add_metric([], float(level))
        yield gauge
