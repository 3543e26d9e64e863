"""Real worker processes against a real redis-server: hand back, hard kills, checkpoints."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from fleetkit.core.handback import HANDBACK_META, HARD_KILLS_META
from fleetkit.core.schema import KEYS
from fleetkit.worker.checkpoint import CHECKPOINT_META
from tests.worker import jobs
from tests.worker.procs import (
    kill_group,
    log_lines,
    runs,
    settings,
    start_worker,
    stop,
    wait_for,
)

pytestmark = pytest.mark.e2e
MODES = pytest.mark.parametrize("forking", [True, False], ids=["forking", "simple"])


def status(redis: Redis, job_id: str) -> JobStatus | None:
    return Job.fetch(job_id, connection=redis).get_status(refresh=True)


def started(redis: Redis, job_id: str) -> bool:
    return runs(redis, job_id) > 0 and status(redis, job_id) == JobStatus.STARTED


def checkpointed_steps(redis: Redis, job_id: str) -> int:
    saved = Job.fetch(job_id, connection=redis).meta.get(CHECKPOINT_META) or {}
    return int(saved.get("next", 0))


def first_sigterm(worker: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, and wait until the worker says it drains."""
    os.kill(worker.pid, signal.SIGTERM)
    wait_for(lambda: log_lines(log, "SIGTERM: draining"), 10, "the drain to begin")


def second_sigterm(worker: subprocess.Popen[bytes], log: Path) -> None:
    """Another SIGTERM, until the worker takes it for a second one.

    A stop signal within a second of the one acted on is the same one delivered twice (systemd
    and the supervisor may both send it): the worker ignores it, so it is sent again.
    """

    def taken() -> bool:
        if log_lines(log, "second stop signal"):
            return True
        os.kill(worker.pid, signal.SIGTERM)
        return False

    wait_for(taken, 10, "a second stop signal to be taken")


@MODES
def test_second_sigterm_hands_back_and_another_worker_finishes(
    redis_url: str, redis: Redis, tmp_path: Path, forking: bool
) -> None:
    config = settings(redis_url, tmp_path, forking=forking)
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.slow, 60)
    queue.enqueue(jobs.quick)  # behind it: the handed-back job must go to the front
    log = tmp_path / "worker.log"
    _, first = start_worker(config, log=log)
    try:
        wait_for(lambda: started(redis, job.id), 20, "the job to start")
        first_sigterm(first, log)
        assert status(redis, job.id) == JobStatus.STARTED  # draining: still running
        second_sigterm(first, log)
        wait_for(lambda: first.poll() is not None, 20, "the worker to exit")
        assert first.returncode == 0
        assert status(redis, job.id) == JobStatus.QUEUED
        assert queue.get_job_ids()[0] == job.id
        assert job.id not in FailedJobRegistry(queue=queue)
        meta = Job.fetch(job.id, connection=redis).meta
        assert len(meta[HANDBACK_META]) == 1 and meta[HANDBACK_META][0]["hard_kill"] is False
    finally:
        stop(first)
    # A second worker picks it up; finishing it takes a shorter run, so swap in a quick deadline.
    _, second = start_worker(settings(redis_url, tmp_path / "b", forking=forking, burst=True))
    try:
        wait_for(lambda: runs(redis, job.id) == 2, 20, "the job to run again")
    finally:
        stop(second)


@MODES
def test_notice_hands_back_only_what_cannot_finish(
    redis_url: str, redis: Redis, tmp_path: Path, forking: bool
) -> None:
    config = settings(redis_url, tmp_path, forking=forking)
    queue = Queue("default", connection=redis)
    long_job = queue.enqueue(jobs.slow, 60)
    _, long_worker = start_worker(config)
    short_dir = tmp_path / "short"
    short_dir.mkdir()
    try:
        wait_for(lambda: started(redis, long_job.id), 20, "the long job to start")
        short_job = queue.enqueue(jobs.slow, 2, job_timeout=4)  # fits before the deadline
        _, short_worker = start_worker(settings(redis_url, short_dir, forking=forking))
        try:
            wait_for(lambda: started(redis, short_job.id), 20, "the short job to start")
            notice = {"kind": "spot-interruption", "deadline": time.time() + 20}
            for run_dir, process in ((tmp_path, long_worker), (short_dir, short_worker)):
                (run_dir / "notice.json").write_text(json.dumps(notice))
                os.kill(process.pid, signal.SIGUSR1)
            # Within one poll the long job is back in its queue; the short one finishes.
            wait_for(lambda: status(redis, long_job.id) == JobStatus.QUEUED, 3, "hand back")
            wait_for(lambda: status(redis, short_job.id) == JobStatus.FINISHED, 10, "short job")
            wait_for(lambda: short_worker.poll() is not None, 10, "short worker exit")
            wait_for(lambda: long_worker.poll() is not None, 10, "long worker exit")
            assert runs(redis, short_job.id) == 1
            assert queue.get_job_ids() == [long_job.id]  # nobody takes jobs after a notice
        finally:
            stop(short_worker)
    finally:
        stop(long_worker)


@MODES
def test_a_job_whose_timeout_cannot_fit_is_handed_back_saying_so(
    redis_url: str, redis: Redis, tmp_path: Path, forking: bool
) -> None:
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.slow, 60, job_timeout=30)  # no run has ended: no mean duration
    log = tmp_path / "worker.log"
    _, worker = start_worker(settings(redis_url, tmp_path, forking=forking), log=log)
    try:
        wait_for(lambda: started(redis, job.id), 20, "the job to start")
        # Already inside the 1 s safety margin: the deadline itself has come as well.
        notice = {"kind": "spot-interruption", "deadline": time.time() + 0.5}
        (tmp_path / "notice.json").write_text(json.dumps(notice))
        os.kill(worker.pid, signal.SIGUSR1)
        wait_for(lambda: status(redis, job.id) == JobStatus.QUEUED, 10, "the hand back")
        wait_for(lambda: worker.poll() is not None, 20, "the worker to exit")
    finally:
        stop(worker)
    (line,) = log_lines(log, f"handing back job {job.id}")
    assert "drain deadline reached" not in line
    assert re.search(
        r"\(termination notice: expected to take \d+ s more \(its timeout is 30 s; no mean "
        r"duration yet\), and the deadline less the 1\.0 s safety margin has passed\)$",
        line,
    ), line


@MODES
def test_hard_kill_job_runs_again_within_30_s(
    redis_url: str, redis: Redis, tmp_path: Path, forking: bool
) -> None:
    config = settings(redis_url, tmp_path, forking=forking)
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.slow, 3)
    _, doomed = start_worker(config)
    _, survivor = None, None
    try:
        wait_for(lambda: started(redis, job.id), 20, "the job to start")
        _, survivor = start_worker(settings(redis_url, tmp_path / "s", forking=forking))
        kill_group(doomed)
        killed_at = time.monotonic()
        wait_for(lambda: runs(redis, job.id) == 2, 30, "the job to run again")
        assert time.monotonic() - killed_at < 30
        wait_for(lambda: status(redis, job.id) == JobStatus.FINISHED, 20, "it to finish")
        assert job.id not in FailedJobRegistry(queue=queue)
        assert Job.fetch(job.id, connection=redis).meta[HARD_KILLS_META] == 1
    finally:
        stop(doomed)
        if survivor is not None:
            stop(survivor)


def test_checkpoint_resumes_after_hand_back(redis_url: str, redis: Redis, tmp_path: Path) -> None:
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.counted_steps, 40, 0.1)
    log = tmp_path / "worker.log"
    _, first = start_worker(settings(redis_url, tmp_path), log=log)
    try:
        wait_for(lambda: runs(redis, job.id) > 0, 20, "the job to start")
        wait_for(lambda: checkpointed_steps(redis, job.id) > 5, 20, "a few checkpoints")
        first_sigterm(first, log)
        second_sigterm(first, log)
        wait_for(lambda: status(redis, job.id) == JobStatus.QUEUED, 10, "hand back")
    finally:
        stop(first)
    _, second = start_worker(settings(redis_url, tmp_path / "b", burst=True))
    try:
        wait_for(lambda: status(redis, job.id) == JobStatus.FINISHED, 30, "the job to finish")
        starts = [int(s) for s in redis.lrange(f"test:starts:{job.id}", 0, -1)]
        assert starts[0] == 0 and starts[1] > 5  # the second run resumed, not restarted
        assert Job.fetch(job.id, connection=redis).return_value() == starts[1]
    finally:
        stop(second)


@MODES
def test_real_failures_still_fail(
    redis_url: str, redis: Redis, tmp_path: Path, forking: bool
) -> None:
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.failing)
    _, worker = start_worker(settings(redis_url, tmp_path, forking=forking, burst=True))
    try:
        wait_for(lambda: worker.poll() is not None, 20, "the burst worker to finish")
        assert status(redis, job.id) == JobStatus.FAILED
        assert job.id in FailedJobRegistry(queue=queue)
    finally:
        stop(worker)


def test_ended_jobs_are_counted_per_queue_for_the_autoscaler(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    queue = Queue("default", connection=redis)
    queue.enqueue(jobs.slow, 0.2)
    queue.enqueue(jobs.slow, 0.2)
    queue.enqueue(jobs.failing)
    _, worker = start_worker(settings(redis_url, tmp_path, forking=False, burst=True))
    try:
        wait_for(lambda: worker.poll() is not None, 20, "the burst worker to finish")
        stats = {k.decode(): float(v) for k, v in redis.hgetall(KEYS.queue_stats).items()}
        assert stats["default:done"] == 3  # finished and failed alike
        assert stats["default:seconds"] >= 0.4
    finally:
        stop(worker)
