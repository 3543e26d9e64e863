"""Trivial jobs for the benchmarks: the cost measured is the worker's, not the job's."""

from __future__ import annotations

from rq import get_current_job

DONE_KEY = "bench:done"


def noop(n: int = 0) -> int:
    return n


def mark(n: int = 0) -> int:
    """Records that this job completed (a set: a job that runs twice counts once)."""
    job = get_current_job()
    assert job is not None
    job.connection.sadd(DONE_KEY, job.id)
    job.connection.incr("bench:runs")
    return n
