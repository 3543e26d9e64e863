"""`fleet-worker run` end to end: real supervisor, real workers, local IMDS, real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from fleetkit.sandbox.imds import LocalImdsServer
from tests.redis_server import RedisServer, free_port
from tests.worker import jobs
from tests.worker.procs import ROOT, descendants, kill_group, runs, wait_for

pytestmark = pytest.mark.e2e


def fleet_worker(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from fleetkit.worker.cli import main; main()", "run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def imds() -> Iterator[LocalImdsServer]:
    with LocalImdsServer() as server:
        yield server


def status(redis: Redis, job_id: str) -> JobStatus | None:
    return Job.fetch(job_id, connection=redis).get_status(refresh=True)


def common(redis_url: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["--redis-url", redis_url, "--queues", "default", "--run-dir", str(tmp_path), *extra]


def test_spot_notice_from_imds_hands_back_and_exits(
    redis_url: str, aws: str, imds: LocalImdsServer, tmp_path: Path
) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.slow, 60)
    supervisor = fleet_worker(
        *common(
            redis_url,
            tmp_path,
            "--processes",
            "2",
            "--imds-endpoint",
            imds.url,
            "--poll-interval",
            "0.5",
        )
    )
    try:
        wait_for(lambda: status(redis, job.id) == JobStatus.STARTED, 20, "the job to start")
        # Each worker is mapped to its instance (from IMDS), which the autoscaler relies on.
        wait_for(lambda: redis.hlen("fleetkit:instances") == 2, 10, "both workers to beat")
        instances = {v.decode() for v in redis.hvals("fleetkit:instances")}
        assert instances == {imds.instance_id}
        imds.set_spot_interruption(at=datetime.now(UTC) + timedelta(seconds=20))
        noticed = time.monotonic()
        wait_for(lambda: status(redis, job.id) == JobStatus.QUEUED, 10, "the hand back")
        assert time.monotonic() - noticed < 5
        wait_for(lambda: supervisor.poll() is not None, 30, "the supervisor to exit")
        assert supervisor.returncode == 0
        assert queue.get_job_ids() == [job.id]
        assert job.id not in FailedJobRegistry(queue=queue)
    finally:
        if supervisor.poll() is None:
            kill_group(supervisor)


def test_crashed_worker_is_restarted_and_its_job_recovered_at_once(
    redis_url: str, tmp_path: Path
) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.slow, 3)
    supervisor = fleet_worker(*common(redis_url, tmp_path, "--processes", "1"))
    try:
        wait_for(lambda: runs(redis, job.id) == 1, 20, "the job to start")
        worker_pid = int(
            (Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split())[0]
        )
        for pid in [worker_pid, *descendants(worker_pid)]:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # The supervisor saw it die: no waiting for the heartbeat TTL.
        wait_for(lambda: runs(redis, job.id) == 2, 15, "the job to run again")
        assert time.monotonic() - killed < 10
        wait_for(lambda: status(redis, job.id) == JobStatus.FINISHED, 20, "it to finish")
        assert job.id not in FailedJobRegistry(queue=queue)
    finally:
        kill_group(supervisor)


def test_sigterm_drains_finishes_short_job_and_exits(redis_url: str, tmp_path: Path) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.slow, 2)
    supervisor = fleet_worker(*common(redis_url, tmp_path, "--processes", "2"))
    try:
        wait_for(lambda: status(redis, job.id) == JobStatus.STARTED, 20, "the job to start")
        supervisor.send_signal(signal.SIGTERM)
        wait_for(lambda: supervisor.poll() is not None, 30, "the supervisor to exit")
        assert supervisor.returncode == 0
        assert status(redis, job.id) == JobStatus.FINISHED
    finally:
        if supervisor.poll() is None:
            kill_group(supervisor)


def test_health_and_metrics_endpoint(redis_url: str, tmp_path: Path) -> None:
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    port = free_port()
    supervisor = fleet_worker(
        *common(redis_url, tmp_path, "--processes", "2", "--metrics-port", str(port))
    )
    try:
        done = [queue.enqueue(jobs.quick, i) for i in range(5)]
        wait_for(lambda: all(status(redis, j.id) == JobStatus.FINISHED for j in done), 30, "jobs")

        def fetch(path: str) -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as error:
                return error.code, error.read()

        code, body = fetch("/healthz")
        assert code == 200, body
        digest = json.loads(body)
        assert digest["healthy"] is True and len(digest["workers"]) == 2
        code, body = fetch("/metrics")
        assert code == 200
        finished = [
            float(line.split()[-1])
            for line in body.decode().splitlines()
            if line.startswith("fleetkit_jobs_finished_total")
        ]
        assert sum(finished) == 5
    finally:
        kill_group(supervisor)


def test_redis_restart_with_aof_loses_no_job(tmp_path: Path) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer(data, appendonly=True).start()
    redis = Redis.from_url(server.url)
    queue = Queue("default", connection=redis)
    batch = [queue.enqueue(jobs.slow, 0.3) for _ in range(30)]
    supervisor = fleet_worker(*common(server.url, tmp_path, "--processes", "2"))
    try:
        wait_for(lambda: sum(runs(redis, j.id) for j in batch) >= 5, 30, "work to start")
        server.restart(down_for=3)
        wait_for(
            lambda: all(status(redis, j.id) == JobStatus.FINISHED for j in batch),
            90,
            "every job to finish after the restart",
        )
        assert len(FailedJobRegistry(queue=queue)) == 0
    finally:
        kill_group(supervisor)
        server.stop()
