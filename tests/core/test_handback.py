"""The hand-back transaction, against a real redis-server."""

from __future__ import annotations

import threading

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from fleetkit.core.handback import HANDBACK_META, HARD_KILLS_META, Outcome, hand_back
from fleetkit.worker.job import FleetJob
from tests.worker import jobs


def running_job(redis: Redis, worker: str = "w1") -> Job:
    queue = Queue("default", connection=redis, job_class=FleetJob)
    job = queue.enqueue(jobs.slow, 10)
    redis.lrem(queue.key, 0, job.id)  # dequeued
    with redis.pipeline() as pipe:
        job.prepare_for_execution(worker, pipe)
        pipe.execute()
    return job


def test_hard_kills_beyond_the_limit_fail_with_a_reason(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    job = running_job(redis)
    outcomes = []
    for round_ in range(3):
        outcomes.append(
            hand_back(
                redis,
                job.id,
                reason=f"lost instance {round_}",
                only_from_worker="w1",
                hard_kill=True,
                max_hard_kills=2,
                job_class=FleetJob,
            )
        )
        if outcomes[-1] is Outcome.REQUEUED:
            assert queue.get_job_ids() == [job.id]
            redis.lrem(queue.key, 0, job.id)
            with redis.pipeline() as pipe:
                Job.fetch(job.id, connection=redis).prepare_for_execution("w1", pipe)
                pipe.execute()
    assert outcomes == [Outcome.REQUEUED, Outcome.REQUEUED, Outcome.FAILED]
    fresh = Job.fetch(job.id, connection=redis)
    assert fresh.get_status() == JobStatus.FAILED
    assert job.id in FailedJobRegistry(queue=queue)
    assert fresh.meta[HARD_KILLS_META] == 3
    result = fresh.latest_result()
    assert result is not None
    assert "died without notice 3 times (limit 2)" in (result.exc_string or "")
    assert queue.get_job_ids() == []


def test_only_the_named_worker_job_is_taken(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    job = running_job(redis, worker="alive")
    assert hand_back(redis, job.id, reason="x", only_from_worker="dead") is Outcome.SKIPPED
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.STARTED


def test_racing_sweepers_requeue_exactly_once(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    job = running_job(redis)
    results: list[Outcome] = []
    barrier = threading.Barrier(8)

    def sweep() -> None:
        connection = Redis.from_url(redis_url)
        barrier.wait()
        results.append(
            hand_back(
                connection,
                job.id,
                reason="race",
                only_from_worker="w1",
                hard_kill=True,
                job_class=FleetJob,
            )
        )

    threads = [threading.Thread(target=sweep) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results).count(Outcome.REQUEUED) == 1
    assert queue.get_job_ids() == [job.id]
    assert len(Job.fetch(job.id, connection=redis).meta[HANDBACK_META]) == 1


def test_a_queued_job_is_never_pushed_twice(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.quick)
    assert hand_back(redis, job.id, reason="x", allow_queued=True) is Outcome.SKIPPED
    assert queue.get_job_ids() == [job.id]


def test_a_registered_job_that_never_started_goes_back_once(redis_url: str) -> None:
    """The notice came between rq registering the execution and the horse starting the job."""
    from rq.executions import Execution
    from rq.registry import StartedJobRegistry

    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis, job_class=FleetJob)
    job = queue.enqueue(jobs.slow, 10)
    queue.enqueue(jobs.slow, 1)  # another job behind it
    redis.lrem(queue.key, 0, job.id)  # dequeued by w1
    with redis.pipeline() as pipe:
        execution = Execution.create(job, 240, pipeline=pipe, worker_name="w1")
        pipe.execute()
    started = StartedJobRegistry("default", connection=redis)
    assert job.get_status() == JobStatus.QUEUED and len(started) == 1

    first = hand_back(
        redis,
        job.id,
        reason="drained before it started",
        job_class=FleetJob,
        allow_queued=True,
        execution=execution.composite_key,
    )
    assert first is Outcome.REQUEUED
    assert queue.get_job_ids()[0] == job.id
    assert len(started) == 0  # nothing left for rq to fail as abandoned

    redis.lrem(queue.key, 0, job.id)  # another worker takes it before w1 looks again
    again = hand_back(
        redis,
        job.id,
        reason="w1 exiting",
        job_class=FleetJob,
        allow_queued=True,
        execution=execution.composite_key,
    )
    assert again is Outcome.SKIPPED
    assert job.id not in queue.get_job_ids()  # not pushed twice
