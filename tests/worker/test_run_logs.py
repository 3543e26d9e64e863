"""What `fleet-worker run` says when what it depends on is missing or goes away: a line when a
problem begins, a line when it ends, one error line when it gives up; never a traceback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from redis import Redis

from fleetkit.core.schema import KEYS
from tests.redis_server import free_port
from tests.worker.procs import finish, start_fleet_worker, wait_for

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
