"""Handing a job back to the front of its queue: the transaction the worker (on a notice or a
crash) and every sweep (the workers' and the autoscaler's) share.

The transaction WATCHes the job hash, so two processes racing to hand back or recover the same
job (a horse and its parent, two sweepers) change it exactly once; the loser sees the new status
and does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry

__all__ = [
    "HANDBACK_META",
    "HARD_KILLS_META",
    "MAX_HARD_KILLS",
    "Outcome",
    "hand_back",
]

log = logging.getLogger(__name__)

HANDBACK_META = "fleetkit_interruptions"
HARD_KILLS_META = "fleetkit_hard_kills"
# A job whose worker dies without notice more often than this goes to the failed registry
# instead of looping forever. Workers and the autoscaler's sweep must agree on it.
MAX_HARD_KILLS = 3


class Outcome(StrEnum):
    REQUEUED = "requeued"
    FAILED = "failed"  # too many hard kills: failed with a reason instead of looping forever
    SKIPPED = "skipped"  # already finished, failed, requeued or taken by someone else


@dataclass(frozen=True)
class _Plan:
    outcome: Outcome
    meta: dict[str, Any]
    reason: str


def hand_back(
    connection: Redis,
    job_id: str,
    *,
    reason: str,
    only_from_worker: str | None = None,
    hard_kill: bool = False,
    max_hard_kills: int = MAX_HARD_KILLS,
    job_class: type[Job] = Job,
    allow_queued: bool = False,
    execution: str | None = None,
) -> Outcome:
    """Put a started job back at the front of its queue: status queued, no retry consumed.

    `only_from_worker` restricts it to a job that worker is running (recovery after a hard kill).
    `allow_queued` also takes a job that was dequeued but never started (rq's intermediate list).
    `execution` (rq's `<job id>:<execution id>`) restricts it to while that execution is still
    registered as started: proof that nobody has handed the job back or finished it since.
    """
    job_key = Job.key_for(job_id)
    for _ in range(20):
        with connection.pipeline() as pipe:
            try:
                pipe.watch(job_key)
                try:
                    job = job_class.fetch(job_id, connection=connection)
                except Exception:
                    return Outcome.SKIPPED
                plan = _plan(job, reason, only_from_worker, hard_kill, max_hard_kills, allow_queued)
                if plan.outcome is Outcome.SKIPPED:
                    return plan.outcome
                queue = Queue(job.origin, connection=connection, job_class=job_class)
                started = StartedJobRegistry(job.origin, connection=connection, job_class=job_class)
                if execution is not None:
                    pipe.watch(started.key)
                    if connection.zscore(started.key, execution) is None:
                        return Outcome.SKIPPED
                if job.get_status(refresh=False) == JobStatus.QUEUED:
                    # A queued job must not be pushed twice: watch the list too.
                    pipe.watch(queue.key)
                    if connection.lpos(queue.key, job.id) is not None:
                        return Outcome.SKIPPED
                executions = [e.composite_key for e in job.get_executions()]
                if execution is not None and execution not in executions:
                    executions.append(execution)
                pipe.multi()
                if executions:
                    pipe.zrem(started.key, *executions)
                pipe.lrem(queue.intermediate_queue_key, 0, job.id)
                pipe.hset(job.key, "meta", job.serializer.dumps(plan.meta))
                if plan.outcome is Outcome.REQUEUED:
                    job.set_status(JobStatus.QUEUED, pipeline=pipe)
                    pipe.hset(job.key, "worker_name", "")
                    queue.push_job_id(job.id, pipeline=pipe, at_front=True)
                else:
                    job.meta = plan.meta
                    job.set_status(JobStatus.FAILED, pipeline=pipe)
                    # As rq's own registry cleanup does: failed registry plus a Result, so
                    # `rq info`, rq-dashboard and job.latest_result() show the reason.
                    job._handle_failure(plan.reason, pipeline=pipe, worker_name="fleetkit")
                pipe.execute()
                log.info("job %s %s: %s", job.id, plan.outcome.value, reason)
                return plan.outcome
            except WatchError:
                continue  # the job changed under us: look again
    return Outcome.SKIPPED


def _plan(
    job: Job,
    reason: str,
    only_from_worker: str | None,
    hard_kill: bool,
    max_hard_kills: int,
    allow_queued: bool,
) -> _Plan:
    status = job.get_status(refresh=False)
    runnable = status == JobStatus.STARTED or (allow_queued and status == JobStatus.QUEUED)
    if not runnable:
        return _Plan(Outcome.SKIPPED, {}, "")
    other_worker = (job.worker_name or "") != only_from_worker
    if only_from_worker is not None and status == JobStatus.STARTED and other_worker:
        return _Plan(Outcome.SKIPPED, {}, "")
    meta = dict(job.meta)
    history = list(meta.get(HANDBACK_META, []))
    history.append({"at": datetime.now(UTC).isoformat(), "reason": reason, "hard_kill": hard_kill})
    meta[HANDBACK_META] = history[-20:]
    if hard_kill:
        kills = int(meta.get(HARD_KILLS_META, 0)) + 1
        meta[HARD_KILLS_META] = kills
        if kills > max_hard_kills:
            why = (
                f"fleetkit: the worker running this job died without notice {kills} times "
                f"(limit {max_hard_kills}); last: {reason}"
            )
            return _Plan(Outcome.FAILED, meta, why)
    return _Plan(Outcome.REQUEUED, meta, reason)
