"""Checkpoints: a job saves its progress, and its next run (after a hand back or a hard kill)
resumes from there instead of starting over.

    from fleetkit.worker.checkpoint import checkpoint, last_checkpoint

    def import_rows(path):
        offset = (last_checkpoint() or {}).get("offset", 0)
        for offset, row in enumerate(read_rows(path, start=offset), start=offset):
            store(row)  # must be idempotent: rows since the last checkpoint may run twice
            if offset % 1000 == 0:
                checkpoint({"offset": offset})
"""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from fleetkit.worker.errors import WorkerError

__all__ = ["CHECKPOINT_META", "checkpoint", "last_checkpoint"]

CHECKPOINT_META = "fleetkit_checkpoint"


def checkpoint(state: dict[str, Any]) -> None:
    """Save `state` (anything rq's serializer can store) as the current job's progress."""
    job = get_current_job()
    if job is None:
        raise WorkerError("checkpoint() called outside an rq job")
    job.meta[CHECKPOINT_META] = state
    job.save_meta()


def last_checkpoint() -> dict[str, Any] | None:
    """The progress saved by an earlier run of the current job, or None on a first run."""
    job = get_current_job()
    if job is None:
        raise WorkerError("last_checkpoint() called outside an rq job")
    job.refresh()
    saved = job.meta.get(CHECKPOINT_META)
    return dict(saved) if isinstance(saved, dict) else None
