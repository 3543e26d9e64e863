"""`autoscaler run` at start-up: Redis must answer within FLEETKIT_START_TIMEOUT_S (120 s
unless set), said in one "waiting for Redis" line; never reached, it gives up with one error line
and exit 1. Reached meanwhile, it starts. The CLI in a subprocess, as a service manager runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetkit.core.redis_io import where
from tests.redis_server import RedisServer, free_port
from tests.worker.procs import wait_for

COMMAND = [sys.executable, "-c", "from fleetkit.autoscaler.cli import main; main()"]


def run_env(redis_url: str, timeout_s: float) -> dict[str, str]:
    return {
        **os.environ,
        "FLEETKIT_REDIS_URL": redis_url,
        "FLEETKIT_START_TIMEOUT_S": str(timeout_s),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


def test_redis_never_reached_gives_up_with_one_error_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    ran = subprocess.run(
        [*COMMAND, "run", "--env", "local", "--metrics-port", "0"],
        env=run_env(url, 2),
        capture_output=True,
        text=True,
        timeout=60,  # a daemon that never gives up fails here
    )

    assert ran.returncode == 1
    lines = ran.stderr.splitlines()
    assert len(lines) <= 40, ran.stderr
    waiting = [line for line in lines if "waiting for Redis" in line]
    assert len(waiting) == 1, ran.stderr
    refused = f"cannot reach Redis at {where(url)}: cannot be reached (ConnectionError: "
    assert refused in waiting[0]
    assert "(retrying for up to 2 s)" in waiting[0]
    assert lines[-1].startswith(f"autoscaler: error: {refused}")
    assert lines[-1].endswith("(gave up after 2 s)")
    assert [line for line in lines if "autoscaler: error:" in line] == [lines[-1]]
    assert "Traceback" not in ran.stderr
    assert ran.stdout == ""


@pytest.mark.usefixtures("aws")  # groups are read once it starts: an empty account
def test_redis_reached_during_the_wait_starts_the_daemon(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # its port chosen, not started yet
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        daemon = subprocess.Popen(
            [*COMMAND, "run", "--env", "local", "--interval", "0.2", "--metrics-port", "0"],
            env=run_env(server.url, 60),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "waiting for Redis" in log.read_text(), 30, "the waiting line")
        server.start()
        wait_for(lambda: "Redis reached after" in log.read_text(), 30, "Redis to be reached")
        wait_for(lambda: "leader lock taken" in log.read_text(), 30, "a first tick")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        server.stop()
    text = log.read_text()
    assert text.count("waiting for Redis") == 1, text
    assert "autoscaler: error:" not in text
