"""The per-instance supervisor: runs N worker processes, restarts crashed ones (recovering their
job at once), watches for termination notices, drains on SIGTERM, completes the lifecycle action.

It waits for Redis before it starts any worker (and gives up after the start timeout when Redis
was never reached), then keeps an eye on it: an outage is one line when it begins and one when it
ends, and a worker that stopped for it is started again when Redis answers, not respawned into
the same error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import RedisError

from fleetkit.core.liveness import Liveness
from fleetkit.core.redis_io import describe, fail_fast_client, wait_for_redis, where
from fleetkit.core.waiting import Outage
from fleetkit.worker.drain import NOTICE_FILE
from fleetkit.worker.job import FleetJob
from fleetkit.worker.notices import TerminationNotice, TerminationNoticeSource
from fleetkit.worker.outage import REDIS_UNREACHABLE_EXIT
from fleetkit.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Supervisor", "WorkerProcess"]

log = logging.getLogger(__name__)
_RESTART_BACKOFF_MAX_S = 30.0
_REDIS_CHECK_S = 1.0  # how often the supervisor PINGs Redis
# A worker that stops for Redis again this soon after its start is restarted with backoff:
# Redis that answers a PING and drops the next connection must not make it spin.
_FLAPPING_S = 10.0


@dataclass
class WorkerProcess:
    index: int
    name: str
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    """Keeps `settings.processes` workers running until drained or told to stop."""

    def __init__(
        self,
        settings: WorkerSettings,
        notices: TerminationNoticeSource | None = None,
        *,
        on_terminated: Callable[[TerminationNotice | None], None] | None = None,
        host: str | None = None,
        console: Console | None = None,
    ) -> None:
        """`console`: where the start-up wait for Redis shows a spinner, if it is a terminal."""
        run_dir = settings.run_dir or tempfile.mkdtemp(prefix="fleetkit-worker-")
        update: dict[str, object] = {"run_dir": run_dir}
        if host is not None and settings.instance_id is None:
            update["instance_id"] = host  # the caller passes the EC2 instance id as host
        self.settings = settings.model_copy(update=update)
        self.run_dir = Path(run_dir)
        self.notices = notices
        self.on_terminated = on_terminated
        self.host = host or socket.gethostname()
        self.connection = Redis.from_url(settings.redis_url)
        self.console = console
        self.redis_at = where(settings.redis_url)
        # Also the health endpoint's client (`probe`): fast answers while Redis is away.
        self.probe = fail_fast_client(settings.redis_url)
        self._outage = Outage(f"Redis at {self.redis_at}", log)
        self._redis_checked = float("-inf")  # time.monotonic() of the last PING
        # Workers that stopped during an outage: recovered and started again when Redis answers.
        self._waiting: dict[int, WorkerProcess] = {}
        self.liveness = Liveness(self.connection, ttl_s=settings.heartbeat_ttl_s)
        self.workers: dict[int, WorkerProcess] = {}
        self.draining = False
        self.notice: TerminationNotice | None = None
        self._stop_signals = 0
        self._restarts: dict[int, int] = {}
        self.notice_hooks: list[Callable[[TerminationNotice], object]] = []
        self._lock = threading.Lock()

    # --- processes -------------------------------------------------------------------------

    def _spawn(self, index: int) -> WorkerProcess:
        name = f"{self.settings.name_prefix}.{self.host}.{index}.{uuid.uuid4().hex[:6]}"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetkit.worker.process",
                self.settings.model_dump_json(),
                name,
            ],
            start_new_session=False,
        )
        log.info("started worker %s (pid %d)", name, process.pid)
        return WorkerProcess(index, name, process)

    def _recover(self, worker: WorkerProcess, *, hard_kill: bool = True) -> None:
        """A worker died under us: hand its job back now instead of waiting for its TTL.

        `hard_kill=False` for a worker that stopped because Redis was away: an outage is not
        the job's doing, so it does not count towards the job's limit of hard kills.
        """
        try:
            self.liveness.recover(
                worker.name,
                reason=f"worker {worker.name} exited with {worker.process.returncode}",
                max_hard_kills=self.settings.max_hard_kills,
                job_class=FleetJob,
                hard_kill=hard_kill,
            )
        except RedisError as exc:
            log.warning("could not recover %s now (the sweep will): %s", worker.name, exc)

    def signal_workers(self, signum: int) -> None:
        for worker in list(self.workers.values()):
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

    # --- notices and signals -----------------------------------------------------------------

    def deliver(self, kind: str, deadline: float | None) -> None:
        """Tell every worker about a notice (file first, then SIGUSR1)."""
        path = self.run_dir / NOTICE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"kind": kind, "deadline": deadline}))
        tmp.replace(path)
        self.signal_workers(signal.SIGUSR1)

    def _on_notice(self, notice: TerminationNotice) -> None:
        for hook in self.notice_hooks:
            try:
                hook(notice)
            except Exception:
                log.exception("notice hook failed")
        deadline = notice.deadline.timestamp() if notice.deadline else None
        if not notice.imminent:
            if self.settings.stop_on_rebalance:
                self.draining = True
            self.deliver(notice.kind.value, deadline)
            return
        if deadline is None:  # ASG termination: the hook gives us the drain timeout
            deadline = time.time() + self.settings.drain_timeout_s
        self.notice = notice
        self.draining = True
        self.deliver(notice.kind.value, deadline)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signals += 1
        self.draining = True
        log.warning(
            "supervisor: %s (%d): passing it on", signal.Signals(signum).name, self._stop_signals
        )
        self.signal_workers(signal.SIGTERM)

    def _watch(self, stop: threading.Event) -> None:
        assert self.notices is not None
        seen: set[str] = set()
        while not stop.is_set():
            notice = self.notices.poll()
            if notice is not None and notice.kind.value not in seen:
                seen.add(notice.kind.value)
                log.warning("termination notice: %s (deadline %s)", notice.kind, notice.deadline)
                self._on_notice(notice)
            stop.wait(self.settings.poll_interval_s)

    # --- Redis -------------------------------------------------------------------------------

    def wait_for_redis(self) -> None:
        """Until Redis answers a PING; RedisUnavailable after the start timeout without one."""
        wait_for_redis(self.probe, self.settings.redis_url, say=log.warning, console=self.console)

    def _redis_answers(self) -> bool:
        """PING Redis now; an outage begins or ends with one line."""
        self._redis_checked = time.monotonic()
        try:
            self.probe.ping()
        except RedisError as exc:
            self._outage.failed(describe(exc))
            return False
        self._outage.recovered()
        return True

    def _check_redis(self, *, now: bool = False) -> None:
        """Every `_REDIS_CHECK_S` (or `now`): once Redis answers, the jobs of the workers that
        stopped for it go back, and the workers start again (unless draining)."""
        if not now and time.monotonic() - self._redis_checked < _REDIS_CHECK_S:
            return
        if not self._redis_answers() or not self._waiting:
            return
        waiting, self._waiting = self._waiting, {}
        for index, worker in sorted(waiting.items()):
            self._recover(worker, hard_kill=False)
            if not self.draining:
                self.workers[index] = self._spawn(index)

    # --- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        self.wait_for_redis()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        stop = threading.Event()
        watcher: threading.Thread | None = None
        if self.notices is not None and self.notices.enabled:
            watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True)
            watcher.start()
        for index in range(self.settings.processes):
            self.workers[index] = self._spawn(index)
        try:
            self._loop()
            # Drained while workers waited for Redis: their jobs go back if Redis answers by now
            # (else the sweep of another instance takes them after a heartbeat TTL).
            self._check_redis(now=True)
        finally:
            stop.set()
        if self.notice is not None and self.on_terminated is not None:
            self.on_terminated(self.notice)
        return 0

    def _loop(self) -> None:
        while self.workers or (self._waiting and not self.draining):
            time.sleep(0.2)
            self._check_redis()
            for index, worker in list(self.workers.items()):
                code = worker.process.poll()
                if code is not None:
                    del self.workers[index]
                    self._exited(index, worker, code)

    def _exited(self, index: int, worker: WorkerProcess, code: int) -> None:
        asked = self.draining or (self.settings.burst and code == 0)
        if (code != 0 or not asked) and not self._redis_answers():
            # Redis is away: its job is recovered, and it is started again, when Redis answers.
            log.debug("worker %s stopped (exit %s) while Redis is unreachable", worker.name, code)
            self._waiting[index] = worker
            return
        if code == REDIS_UNREACHABLE_EXIT:
            log.debug("worker %s stopped on a Redis outage; Redis answers again", worker.name)
        elif code != 0:
            log.error("worker %s exited with %s", worker.name, code)
        if code != 0 or not asked:
            # Not asked to stop, yet it stopped (rq quits with 0 when Redis drops):
            # whatever it was running goes back now. A no-op when nothing is left.
            self._recover(worker, hard_kill=code != REDIS_UNREACHABLE_EXIT)
        if asked:
            return
        lived = time.monotonic() - worker.started_at
        crashed = code != 0 and (code != REDIS_UNREACHABLE_EXIT or lived < _FLAPPING_S)
        restarts = self._restarts.get(index, 0)
        backoff = min(2.0**restarts, _RESTART_BACKOFF_MAX_S) if crashed else 0.0
        self._restarts[index] = restarts + 1 if crashed else 0
        if backoff:
            log.info("restarting worker %d in %.0f s", index, backoff)
            time.sleep(backoff)
        if not self.draining:
            self.workers[index] = self._spawn(index)
