"""What `fleet-worker run` says when what it depends on is missing or goes away: a line when a
problem begins, a line when it ends, one error line when it gives up; never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from fleetkit.core.schema import KEYS
from tests.redis_server import RedisServer, free_port
from tests.worker import jobs
from tests.worker.procs import ROOT, finish, runs, start_fleet_worker, wait_for

pytestmark = pytest.mark.e2e


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """A plain web server (404 for GET, 501 for PUT): what answers where IMDS should be on
    another cloud or behind a proxy."""
    handler = partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("answers", [False, True], ids=["nothing-listens", "a-web-server"])
def test_off_ec2_imds_is_one_line_then_quiet(
    redis_url: str, redis: Redis, tmp_path: Path, web_server: str, answers: bool
) -> None:
    endpoint = web_server if answers else f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "run.log"
    supervisor = start_fleet_worker(
        *("--redis-url", redis_url, "--queues", "default", "--run-dir", str(tmp_path)),
        *("--imds-endpoint", endpoint, "--poll-interval", "0.2"),
        log=log,
    )
    try:
        wait_for(lambda: redis.zcard(KEYS.heartbeats) == 1, 30, "the worker to beat")
        # Ten polls' worth of running: a watcher that logs its requests would have by now.
        time.sleep(2)
    finally:
        finish(supervisor)
    lines = log.read_text().splitlines()
    about_imds = [line for line in lines if "instance metadata" in line]
    assert len(about_imds) == 1, about_imds
    assert f"no instance metadata service at {endpoint}" in about_imds[0]
    assert about_imds[0].endswith("termination notices disabled")
    assert [line for line in lines if "httpx" in line or "HTTP Request" in line] == []
    assert "Traceback" not in log.read_text()


def test_a_redis_never_reached_ends_in_one_error_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {**os.environ, "FLEETKIT_START_TIMEOUT_S": "3"}
    result = subprocess.run(
        [
            *(sys.executable, "-c", "from fleetkit.worker.cli import main; main()", "run"),
            *("--redis-url", f"redis://:secret@127.0.0.1:{port}/0", "--queues", "default"),
            *("--imds-endpoint", f"http://127.0.0.1:{free_port()}", "--run-dir", str(tmp_path)),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,  # a guard: a supervisor that waits for ever fails here
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout
    assert len(lines) <= 40
    assert re.fullmatch(
        rf"fleet-worker: error: cannot reach Redis at 127\.0\.0\.1:{port}/0: cannot be reached "
        r"\(ConnectionError: .+\) \(gave up after 3 s\)",
        lines[-1],
    ), lines[-1]
    assert len([line for line in lines if "waiting for Redis" in line]) == 1
    assert "Traceback" not in result.stdout
    assert "started worker" not in result.stdout  # nothing was spawned into the error
    assert "secret" not in result.stdout  # the URL's password is never printed


def redis_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "redis" in line.lower()]


@pytest.mark.parametrize("forking", [True, False], ids=["forking", "simple"])
def test_a_redis_outage_is_said_once_and_no_job_is_lost(tmp_path: Path, forking: bool) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer(data, appendonly=True).start()  # the queues survive its restart
    redis = Redis.from_url(server.url)
    queue = Queue("default", connection=redis)
    before = [queue.enqueue(jobs.slow, 0.3) for _ in range(20)]
    log = tmp_path / "run.log"
    processes = 2
    supervisor = start_fleet_worker(
        *("--redis-url", server.url, "--queues", "default", "--run-dir", str(tmp_path)),
        *("--processes", str(processes), "--imds-endpoint", f"http://127.0.0.1:{free_port()}"),
        *(() if forking else ("--simple",)),
        log=log,
    )
    try:
        wait_for(lambda: sum(runs(redis, j.id) for j in before) >= 3, 30, "work to start")
        server.restart(down_for=5)
        after = [queue.enqueue(jobs.slow, 0.3) for _ in range(10)]
        wait_for(
            lambda: all(j.get_status(refresh=True) == JobStatus.FINISHED for j in before + after),
            90,
            "every job to finish",
        )
        assert len(FailedJobRegistry(queue=queue)) == 0
    finally:
        finish(supervisor)
        server.stop()
    text = log.read_text()
    lines = text.splitlines()
    assert "Traceback" not in text
    said = redis_lines(lines)
    # One line as the outage begins, one as it ends, from the supervisor for the instance; the
    # worker processes ride it out (or are started again when Redis answers) saying nothing
    # above DEBUG. Nothing per retry.
    assert len(said) == 2, "\n".join(said)
    supervisor_said = [line for line in said if "fleetkit.worker.supervisor" in line]
    assert len(supervisor_said) >= 2, said
    assert re.search(r"WARNING .* unreachable, retrying until it answers", supervisor_said[0])
    assert re.search(r"WARNING .* reachable again after \d+ s", supervisor_said[-1])
    # Every line at WARNING or above is one of the supervisor's two, or a job it recovered.
    loud = [line for line in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    others = [line for line in loud if line not in said and "SIGTERM" not in line]
    assert all("recovered job" in line for line in others), others
    assert len(others) <= processes  # each worker process ran one job at a time


def test_a_redis_that_refuses_writes_is_a_crash_with_backoff_not_an_outage(
    tmp_path: Path,
) -> None:
    # A replica of a master nobody runs: it answers PING and reads, and refuses every write
    # (what a worker meets after a failover that left it on the old primary).
    data = tmp_path / "replica"
    data.mkdir()
    replica = RedisServer(data, extra=("--replicaof", "127.0.0.1", str(free_port()))).start()
    log = tmp_path / "run.log"
    supervisor = start_fleet_worker(
        *("--redis-url", replica.url, "--queues", "default", "--run-dir", str(tmp_path)),
        *("--imds-endpoint", f"http://127.0.0.1:{free_port()}"),
        log=log,
    )
    try:
        wait_for(lambda: "restarting worker 0 in 2 s" in log.read_text(), 60, "a second backoff")
    finally:
        finish(supervisor)
        replica.stop()
    lines = log.read_text().splitlines()
    crashes = [line for line in lines if " ERROR " in line and "stopped: Redis" in line]
    assert crashes and all("is read-only" in line for line in crashes), lines
    assert "restarting worker 0 in 1 s" in log.read_text()  # backoff, not a respawn loop
    assert not [line for line in lines if "unreachable" in line]  # a refusal is no outage
    assert "Traceback" not in log.read_text()
