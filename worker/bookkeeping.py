"""What a worker records of each job, riding in the pipelines rq already sends.

- in flight: `KEYS.inflight` maps the worker to its job from the transaction in which rq
  registers the execution to the one that ends the job (or the hand back), so a hard kill is
  recovered by the sweep and the autoscaler knows which instances are busy;
- durations per job function (`mean_duration`, which the drain's decisions use);
- queue stats: done and seconds per queue (the autoscaler's completion rate and mean duration);
- the worker's metrics and health.

The writes at a job's start and at its end each go to Redis as one EVAL (`worker.batch`), inside
rq's own pipeline: no round trip of their own.
"""

from __future__ import annotations

import time
from typing import Any, cast

from redis import Redis
from rq.job import Job

from fleetkit.core.schema import KEYS
from fleetkit.worker.batch import WriteBatch
from fleetkit.worker.health import WorkerHealth
from fleetkit.worker.metrics import WorkerMetrics

__all__ = ["JobBookkeeping", "mean_duration"]


def mean_duration(connection: Any, func_name: str) -> float | None:
    """Observed mean duration of a job function, or None before the first run finishes."""
    total, count = connection.hmget(KEYS.durations, f"{func_name}:sum", f"{func_name}:count")
    if not count or int(count) == 0:
        return None
    return float(total) / int(count)


def _duration(job: Job) -> float:
    if job.started_at and job.ended_at:
        return max((job.ended_at - job.started_at).total_seconds(), 0.0)
    if job.started_at:
        return max(time.time() - job.started_at.timestamp(), 0.0)
    return 0.0


class JobBookkeeping:
    """One worker's per-job records; each method adds its writes to a pipeline of rq's."""

    def __init__(self, connection: Redis, worker: str) -> None:
        self.worker = worker
        self.metrics = WorkerMetrics(connection, worker)
        self.health = WorkerHealth(connection, worker)

    def running(self, job: Job, pipeline: Any) -> None:
        """The job runs here: in the transaction that registers rq's execution."""
        pipeline.hset(KEYS.inflight, self.worker, job.id)

    def started(self, job: Job, pipeline: Any) -> None:
        """The job's start, with its pickup latency."""
        pickup = time.time() - job.enqueued_at.timestamp() if job.enqueued_at else None
        batch = WriteBatch()
        self.metrics.job_started(pickup, cast(Any, batch))
        batch.add_to(pipeline)

    def finished(self, job: Job, pipeline: Any) -> None:
        """The job function returned: it counts towards its function's mean duration."""
        duration = _duration(job)
        batch = WriteBatch()
        batch.hdel(KEYS.inflight, self.worker)
        batch.hincrbyfloat(KEYS.durations, f"{job.func_name}:sum", duration)
        batch.hincrby(KEYS.durations, f"{job.func_name}:count", 1)
        _count_ended(batch, job.origin, duration)
        self.metrics.job_finished(duration, cast(Any, batch))
        self.health.record_job(True, pipe=cast(Any, batch))
        batch.add_to(pipeline)

    def failed(self, job: Job, pipeline: Any) -> None:
        """The job function raised."""
        duration = _duration(job)
        batch = WriteBatch()
        batch.hdel(KEYS.inflight, self.worker)
        _count_ended(batch, job.origin, duration)
        self.metrics.job_failed(duration, cast(Any, batch))
        self.health.record_job(False, pipe=cast(Any, batch))
        batch.add_to(pipeline)

    def released(self, pipeline: Any) -> None:
        """The worker no longer runs a job (handed back, or never started)."""
        pipeline.hdel(KEYS.inflight, self.worker)


def _count_ended(batch: WriteBatch, queue: str, duration: float) -> None:
    # The autoscaler samples these for completion rate and mean duration; producers write nothing.
    batch.hincrby(KEYS.queue_stats, f"{queue}:done", 1)
    batch.hincrbyfloat(KEYS.queue_stats, f"{queue}:seconds", duration)
