"""Start and stop real worker processes for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from redis import Redis

from fleetkit.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


def settings(redis_url: str, run_dir: Path, **changes: object) -> WorkerSettings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "queues": ("default",),
        "run_dir": str(run_dir),
        "heartbeat_ttl_s": 4.0,
        "sweep_interval_s": 1.0,
        "safety_margin_s": 1.0,
        "drain_timeout_s": 30.0,
        "handback_grace_s": 3.0,
    }
    values.update(changes)
    return WorkerSettings.model_validate(values)


def start_worker(
    config: WorkerSettings, name: str | None = None, *, log: Path | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """A worker process; its log (stderr) goes to `log` when given."""
    name = name or f"test.{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(
            [sys.executable, "-m", "fleetkit.worker.process", config.model_dump_json(), name],
            cwd=ROOT,
            start_new_session=True,  # its own process group: kill the horse along with it
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    return name, process


def log_lines(log: Path, containing: str) -> list[str]:
    """The lines of a worker's log that contain `containing` (none before it has written)."""
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if containing in line]


def descendants(pid: int) -> list[int]:
    """Child processes, recursively (rq's horse calls setsid, so it leaves the process group)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and its horse at once: what a vanished instance looks like."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def runs(connection: Redis, job_id: str) -> int:
    return int(connection.get(f"test:runs:{job_id}") or 0)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        kill_group(process)


def start_fleet_worker(
    *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`fleet-worker run ARGS` (the supervisor), its output (stdout and stderr) to `log`."""
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL
        return subprocess.Popen(
            [sys.executable, "-c", "from fleetkit.worker.cli import main; main()", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # kill_group reaches its workers and their horses
        )


def finish(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM and wait for a clean exit; SIGKILL the whole group if it does not come."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
