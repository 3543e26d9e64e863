"""Job functions the worker tests enqueue (imported by real worker processes)."""

from __future__ import annotations

import os
import time

from rq import get_current_job

from fleetkit.worker.checkpoint import checkpoint, last_checkpoint


def _count_run() -> None:
    job = get_current_job()
    assert job is not None
    job.connection.incr(f"test:runs:{job.id}")
    job.connection.rpush(f"test:ran-on:{job.id}", job.worker_name or "")


def quick(value: int = 1) -> int:
    _count_run()
    return value


def slow(seconds: float) -> str:
    _count_run()
    time.sleep(seconds)
    return "done"


def counted_steps(total: int, step_s: float) -> int:
    """Counts to `total`, checkpointing each step; returns where this run started."""
    _count_run()
    job = get_current_job()
    assert job is not None
    start = (last_checkpoint() or {}).get("next", 0)
    job.connection.rpush(f"test:starts:{job.id}", start)
    for step in range(start, total):
        time.sleep(step_s)
        checkpoint({"next": step + 1})
    return start


def failing() -> None:
    _count_run()
    raise RuntimeError("boom")


def whereami() -> tuple[int, int]:
    """The process the job ran in, and its parent (the worker)."""
    _count_run()
    return os.getpid(), os.getppid()


def checksum(blob: bytes) -> int:
    _count_run()
    return sum(blob) % 65521
