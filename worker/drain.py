"""The drain: what a worker does between "this instance is going away" and its exit.

Notice flow: the supervisor writes the notice to `notice.json` and sends SIGUSR1. The worker stops
taking jobs; a running job that cannot finish before the deadline minus the safety margin is
interrupted with ShutDownImminent (its `finally` blocks run) and put back at the front of its queue.
SIGTERM is the same with deadline = now + drain timeout; a second SIGTERM hands back at once.
A job kept running is handed back when the deadline minus the margin comes (SIGUSR2, from a timer).

How a job is interrupted depends on the variant (`_fleet_hand_back_current`): the forking worker
signals its horse, the simple worker raises in its own main thread.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from enum import StrEnum
from types import FrameType
from typing import Any

from rq.exceptions import StopRequested

from fleetkit.worker.bookkeeping import JobBookkeeping, mean_duration
from fleetkit.worker.job import FleetJob
from fleetkit.worker.options import FleetOptions

__all__ = ["NOTICE_FILE", "DrainMixin", "DrainState", "handback_reason"]

log = logging.getLogger(__name__)
NOTICE_FILE = "notice.json"
_DUPLICATE_SIGNAL_S = 1.0  # systemd and the supervisor may both deliver one SIGTERM


class DrainState(StrEnum):
    """Where a worker process is on its way out."""

    WORKING = "working"  # taking jobs
    DRAINING = "draining"  # taking no more jobs; the running one finishes if it can
    HANDING_BACK = "handing-back"  # the running job (`_fleet_job`) is being put back


class DrainMixin:
    """The drain's signal handlers, decisions and deadline timer; mixed into the fleet worker."""

    _fleet_state = DrainState.WORKING
    _fleet_deadline: float | None = None  # the earliest deadline told so far
    _fleet_last_signal = 0.0  # time.time() of the last stop signal acted on
    _fleet_timer: threading.Timer | None = None  # sends SIGUSR2 at deadline minus margin
    _fleet_pid = 0  # the worker's pid: a forked child runs these handlers until it sets its own
    # Set up by the fleet worker (declared for type checkers):
    options: FleetOptions
    bookkeeping: JobBookkeeping
    connection: Any
    name: str
    _fleet_job: FleetJob | None
    _stop_requested: bool

    @property
    def _fleet_draining(self) -> bool:
        return self._fleet_state is not DrainState.WORKING

    def _fleet_handing_back(self, job_id: str) -> bool:
        """Whether the job being handed back is `job_id`."""
        job = self._fleet_job
        return self._fleet_state is DrainState.HANDING_BACK and job is not None and job.id == job_id

    def _fleet_begin_hand_back(self) -> None:
        """From now on the running job goes back to its queue instead of finishing."""
        self._fleet_state = DrainState.HANDING_BACK

    def _fleet_job_ended(self) -> None:
        """The running job has ended (finished, failed or handed back)."""
        if self._fleet_state is DrainState.HANDING_BACK:
            self._fleet_state = DrainState.DRAINING

    def _fleet_hand_back_current(self, reason: str) -> None:
        """Interrupt the running job and put it back; per variant."""
        raise NotImplementedError

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._fleet_on_stop_signal)
        signal.signal(signal.SIGINT, self._fleet_on_stop_signal)
        signal.signal(signal.SIGUSR1, self._fleet_on_notice)
        signal.signal(signal.SIGUSR2, self._fleet_on_deadline)

    def _fleet_cancel_timer(self) -> None:
        if self._fleet_timer:
            self._fleet_timer.cancel()

    # --- signals -----------------------------------------------------------------------------

    def _fleet_on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._fleet_pid:
            return
        now = time.time()
        if now - self._fleet_last_signal < _DUPLICATE_SIGNAL_S:
            return
        first = not self._fleet_draining
        self._fleet_last_signal = now
        if first:
            log.info("worker %s: %s: draining", self.name, signal.Signals(signum).name)
            self._fleet_drain(now + self.options.drain_timeout_s, decide=False)
        else:
            log.warning("worker %s: second stop signal: handing back at once", self.name)
            self._fleet_hand_back_current("second stop signal")

    def _fleet_on_notice(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._fleet_pid:
            return
        path = self.options.run_dir / NOTICE_FILE
        try:
            notice = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.error("worker %s: unreadable notice %s: %s", self.name, path, exc)
            return
        kind = str(notice.get("kind", ""))
        if kind == "rebalance":
            self.bookkeeping.health.set_at_risk("rebalance recommendation")
        if kind == "rebalance" and not self.options.stop_on_rebalance:
            log.info("worker %s: rebalance recommendation: at risk, still working", self.name)
            return
        deadline = notice.get("deadline")
        log.warning("worker %s: %s notice, deadline %s: draining", self.name, kind, deadline)
        self._fleet_drain(float(deadline) if deadline is not None else None, decide=True)

    def _fleet_on_deadline(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._fleet_pid:
            return
        if self._fleet_job is not None:
            self._fleet_hand_back_current("drain deadline reached")

    # --- decisions -----------------------------------------------------------------------------

    def _fleet_drain(self, deadline: float | None, *, decide: bool) -> None:
        if self._fleet_state is DrainState.WORKING:
            self._fleet_state = DrainState.DRAINING
        self._stop_requested = True
        earlier = deadline is not None and (
            self._fleet_deadline is None or deadline < self._fleet_deadline
        )
        if earlier:
            self._fleet_deadline = deadline
        job = self._fleet_job
        if job is not None:
            # Decided before the deadline timer is armed: a deadline already inside the margin
            # would fire it at once, and the job would go back for "deadline reached" instead
            # of the reason it was judged unable to finish.
            why = None
            if deadline is None or decide:
                why = self._fleet_why_hand_back(job, deadline)
            if why is not None:
                self._fleet_hand_back_current(f"termination notice: {why}")
        if earlier and deadline is not None:
            self._fleet_arm_timer(deadline - self.options.safety_margin_s)
        if job is None:
            raise StopRequested()  # idle: leave the blocking dequeue now

    def _fleet_arm_timer(self, at: float) -> None:
        self._fleet_cancel_timer()
        pid = os.getpid()
        timer = threading.Timer(max(at - time.time(), 0.0), os.kill, (pid, signal.SIGUSR2))
        timer.daemon = True
        timer.start()
        self._fleet_timer = timer

    def _fleet_why_hand_back(self, job: FleetJob, deadline: float | None) -> str | None:
        """Why the running job cannot finish before `deadline` (less the margin), if it cannot."""
        started = job.started_at.timestamp() if job.started_at else time.time()
        timeout = job.timeout if job.timeout and job.timeout > 0 else None
        known = deadline is not None
        return handback_reason(
            now=time.time(),
            started_at=started,
            deadline=deadline,
            safety_margin_s=self.options.safety_margin_s,
            mean_duration_s=mean_duration(self.connection, job.func_name or "") if known else None,
            timeout_s=timeout,
        )


def handback_reason(
    *,
    now: float,
    started_at: float,
    deadline: float | None,
    safety_margin_s: float,
    mean_duration_s: float | None,
    timeout_s: float | None,
) -> str | None:
    """Why a running job cannot finish before the deadline minus the margin; None if it can.

    The job is expected to run for its function's observed mean duration, else for its timeout.
    """
    if deadline is None:
        return "the notice gives no deadline"
    expected = mean_duration_s if mean_duration_s is not None else timeout_s
    if expected is None or expected < 0:
        return "no mean duration yet and no timeout: it cannot be trusted to finish"
    remaining = max(expected - (now - started_at), 0.0)
    window = deadline - safety_margin_s - now
    if remaining <= window:
        return None
    if mean_duration_s is not None:
        basis = f"its mean duration is {_seconds(expected)}"
    else:
        basis = f"its timeout is {_seconds(expected)}; no mean duration yet"
    expectation = f"expected to take {_seconds(remaining)} more ({basis})"
    margin = f"the deadline less the {_seconds(safety_margin_s)} safety margin"
    if window <= 0:
        return f"{expectation}, and {margin} has passed"
    return f"{expectation}, only {_seconds(window)} left before {margin}"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
