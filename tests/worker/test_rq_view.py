"""`rq info` and rq-dashboard read rq's own keys: a job running on our worker must look exactly as
it does on plain `rq worker` in the same mode (the worker writes the job's start its own way)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import now
from rq.worker import Worker

from tests.worker import jobs
from tests.worker.procs import ROOT, settings, start_worker, stop, wait_for

pytestmark = pytest.mark.e2e
RQ_CLASSES = {True: "rq.worker.Worker", False: "rq.worker.SimpleWorker"}


def start_plain_rq(
    redis_url: str, forking: bool, queue: str
) -> tuple[str, subprocess.Popen[bytes]]:
    name = f"plain.{uuid.uuid4().hex[:8]}"
    command = [str(Path(sys.executable).parent / "rq"), "worker", "-u", redis_url]
    command += ["-w", RQ_CLASSES[forking], "-n", name, queue]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return name, process


def running_view(redis: Redis, job: Job, worker_name: str) -> dict[str, object]:
    """What rq's own readers see of a running job and its worker (ids replaced by roles)."""
    job.refresh()
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name, redis)
    assert worker is not None, f"rq does not list worker {worker_name}"
    queue = Queue(job.origin, connection=redis)
    return {
        "job status": job.get_status(),
        "job runs on": "the worker" if job.worker_name == worker_name else job.worker_name,
        "job fields": sorted(k.decode() for k in redis.hkeys(job.key)),
        "worker state": worker.get_state(),
        "worker's job": "the job" if worker.get_current_job_id() == job.id else None,
        "worker fields": sorted(k.decode() for k in redis.hkeys(worker.key)),
        "in started registry": job.id in StartedJobRegistry(queue=queue).get_job_ids(),
        "executions": redis.zcard(f"rq:executions:{job.id}"),
        "left in intermediate list": redis.llen(queue.intermediate_queue_key),
        "still queued": len(queue),
    }


def idle_view(redis: Redis, worker_name: str) -> dict[str, object]:
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name, redis)
    assert worker is not None, f"rq does not list worker {worker_name}"
    worker.refresh()
    beat = worker.last_heartbeat
    return {
        "state": worker.get_state(),
        "current job": worker.get_current_job_id(),
        "jobs done": worker.successful_job_count,
        "beat in the last 10 s": beat is not None and (now() - beat).total_seconds() < 10,
        "kept alive": redis.ttl(worker.key) > 60,
    }


@pytest.mark.parametrize("forking", [True, False], ids=["forking", "simple"])
def test_a_running_job_looks_to_rq_as_on_plain_rq(
    redis_url: str, redis: Redis, tmp_path: Path, forking: bool
) -> None:
    plain_name, plain = start_plain_rq(redis_url, forking, "plain")
    ours_name, ours = start_worker(settings(redis_url, tmp_path, forking=forking))
    try:
        plain_job = Queue("plain", connection=redis).enqueue(jobs.slow, 4)
        our_job = Queue("default", connection=redis).enqueue(jobs.slow, 4)
        for job in (plain_job, our_job):
            wait_for(
                lambda job=job: job.get_status(refresh=True) == JobStatus.STARTED,
                20,
                f"job {job.id} to start",
            )
        expected = running_view(redis, plain_job, plain_name)
        assert expected["job status"] == JobStatus.STARTED  # the comparison means something
        assert expected["worker state"] == "busy"
        assert running_view(redis, our_job, ours_name) == expected

        for job in (plain_job, our_job):
            wait_for(
                lambda job=job: job.get_status(refresh=True) == JobStatus.FINISHED,
                20,
                f"job {job.id} to finish",
            )
        wait_for(lambda: idle_view(redis, plain_name) == idle_view(redis, ours_name), 5, "idle")
        assert idle_view(redis, ours_name)["state"] == "idle"
    finally:
        stop(plain)
        stop(ours)
