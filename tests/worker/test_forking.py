"""The forking worker's spare horse: each job in a fresh process, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from fleetkit.core.handback import HANDBACK_META
from tests.worker import jobs
from tests.worker.procs import descendants, runs, settings, start_worker, stop, wait_for

pytestmark = pytest.mark.e2e


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for its reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in {"Z", "X"}


def spares(pid: int) -> list[int]:
    return [child for child in descendants(pid) if not gone(child)]


def finished(redis: Redis, job_id: str) -> bool:
    return Job.fetch(job_id, connection=redis).get_status(refresh=True) == JobStatus.FINISHED


def a_spare(redis: Redis, queue: Queue, worker_pid: int) -> int:
    """Run one job so that the worker forks a spare; return the spare's pid."""
    warm = queue.enqueue(jobs.quick)
    wait_for(lambda: finished(redis, warm.id), 20, "the first job")
    wait_for(lambda: len(spares(worker_pid)) == 1, 10, "a spare horse")
    (spare,) = spares(worker_pid)
    return spare


@dataclass
class Warm:
    queue: Queue
    worker: subprocess.Popen[bytes]
    spare: int


@pytest.fixture
def warm(redis_url: str, redis: Redis, tmp_path: Path) -> Iterator[Warm]:
    """A worker that has run one job (so it forked a spare), stopped at the end."""
    queue = Queue("default", connection=redis)
    _, worker = start_worker(settings(redis_url, tmp_path))
    try:
        yield Warm(queue, worker, a_spare(redis, queue, worker.pid))
    finally:
        stop(worker)


@pytest.mark.parametrize("prefork", [True, False], ids=["prefork", "fork-per-job"])
def test_every_job_runs_in_a_fresh_child_of_the_worker(
    redis_url: str, redis: Redis, tmp_path: Path, prefork: bool
) -> None:
    queue = Queue("default", connection=redis)
    enqueued = [queue.enqueue(jobs.whereami) for _ in range(6)]
    _, worker = start_worker(settings(redis_url, tmp_path, burst=True, prefork=prefork))
    try:
        assert worker.wait(timeout=60) == 0
    finally:
        stop(worker)
    results = [Job.fetch(job.id, connection=redis).return_value() for job in enqueued]
    assert all(result is not None for result in results)
    pids = {pid for pid, _ in results}
    assert len(pids) == len(enqueued)  # no process ran two jobs
    assert worker.pid not in pids
    assert {parent for _, parent in results} == {worker.pid}


def test_a_spare_waits_connected_and_leaves_with_its_worker(redis: Redis, warm: Warm) -> None:
    worker, spare = warm.worker, warm.spare
    # Hard kill of the worker alone: the spare must not linger with no job and no parent.
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: gone(spare), 10, "the spare to exit")


def test_a_dead_spare_is_replaced_and_no_job_fails(redis: Redis, warm: Warm) -> None:
    queue, spare = warm.queue, warm.spare
    os.kill(spare, signal.SIGKILL)
    wait_for(lambda: gone(spare), 10, "the spare to die")
    second = queue.enqueue(jobs.quick)
    wait_for(lambda: finished(redis, second.id), 20, "a job after the spare died")
    assert runs(redis, second.id) == 1
    assert len(FailedJobRegistry(queue=queue)) == 0


def test_a_job_on_a_spare_is_handed_back_on_a_second_sigterm(redis: Redis, warm: Warm) -> None:
    queue, worker = warm.queue, warm.worker  # the first job forks; the next one runs on the spare
    long_job = queue.enqueue(jobs.slow, 60)
    wait_for(lambda: runs(redis, long_job.id) == 1, 20, "the long job to start")
    children = spares(worker.pid)  # the horse running the long job, and the next spare
    assert len(children) == 2
    os.kill(worker.pid, signal.SIGTERM)
    time.sleep(1.5)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    job = Job.fetch(long_job.id, connection=redis)
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.get_job_ids()[0] == long_job.id
    assert long_job.id not in FailedJobRegistry(queue=queue)
    wait_for(lambda: all(gone(child) for child in children), 10, "no process left behind")


def test_a_spare_that_dies_holding_an_unstarted_job_gives_it_back(redis: Redis, warm: Warm) -> None:
    queue, spare = warm.queue, warm.spare
    os.kill(spare, signal.SIGSTOP)  # it cannot read the job it is about to be handed
    job = queue.enqueue(jobs.quick)
    wait_for(lambda: job.id in queue.started_job_registry, 10, "the job to be dispatched")
    assert runs(redis, job.id) == 0
    os.kill(spare, signal.SIGKILL)
    wait_for(lambda: finished(redis, job.id), 20, "the job to run on another horse")
    assert runs(redis, job.id) == 1
    assert len(FailedJobRegistry(queue=queue)) == 0
    (entry,) = Job.fetch(job.id, connection=redis).meta[HANDBACK_META]
    assert entry["hard_kill"] is True and "before starting" in entry["reason"]


def test_a_hand_back_reaching_a_spare_before_its_job_leaves_the_job_unstarted(
    redis: Redis, warm: Warm
) -> None:
    queue, worker, spare = warm.queue, warm.worker, warm.spare
    os.kill(spare, signal.SIGSTOP)
    job = queue.enqueue(jobs.slow, 60)
    wait_for(lambda: job.id in queue.started_job_registry, 10, "the job to be dispatched")
    os.kill(worker.pid, signal.SIGTERM)
    time.sleep(1.5)
    os.kill(worker.pid, signal.SIGTERM)  # hand back at once: the spare is signalled
    time.sleep(0.5)
    os.kill(spare, signal.SIGCONT)  # it sees the hand back before it reads its job
    assert worker.wait(timeout=20) == 0
    assert runs(redis, job.id) == 0  # it never started
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED
    assert queue.get_job_ids()[0] == job.id
    assert len(FailedJobRegistry(queue=queue)) == 0


def test_a_horse_goes_with_its_worker(redis: Redis, warm: Warm) -> None:
    """A horse outliving its worker would run the job while the sweep gives it to another."""
    queue, worker = warm.queue, warm.worker
    job = queue.enqueue(jobs.slow, 60)
    wait_for(lambda: runs(redis, job.id) == 1, 20, "the long job to start")
    children = spares(worker.pid)
    assert len(children) == 2  # the horse running it, and the next spare
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: all(gone(child) for child in children), 10, "the horse to die")


def test_large_and_small_jobs_reach_the_spare_intact(redis: Redis, warm: Warm) -> None:
    queue = warm.queue
    blobs = [os.urandom(200_000), b"small"]  # over and under what the pipe is handed
    enqueued = [queue.enqueue(jobs.checksum, blob) for blob in blobs]
    for job in enqueued:
        wait_for(lambda job=job: finished(redis, job.id), 20, "the job to finish")
    results = [Job.fetch(job.id, connection=redis).return_value() for job in enqueued]
    assert results == [sum(blob) % 65521 for blob in blobs]
