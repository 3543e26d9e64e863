"""rq workers that hand their job back instead of losing it when the instance goes away.

Both variants share one mixin that overrides rq's own hooks; rq's job loop is not copied. The
variants live beside this module: `worker.forking.FleetWorker` (a horse per job) and
`worker.simple.FleetSimpleWorker` (jobs in the worker process).

Notice flow: the supervisor writes the notice to `notice.json` and sends SIGUSR1. The worker stops
taking jobs; a running job that cannot finish before the deadline minus the safety margin is
interrupted with ShutDownImminent (its `finally` blocks run) and put back at the front of its queue.
SIGTERM is the same with deadline = now + drain timeout; a second SIGTERM hands back at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, cast

from redis.exceptions import RedisError
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.worker import WorkerStatus

from fleetkit.core.handback import Outcome, hand_back
from fleetkit.core.liveness import Liveness, Recovered
from fleetkit.core.schema import KEYS
from fleetkit.worker.batch import WriteBatch
from fleetkit.worker.handback import should_hand_back
from fleetkit.worker.health import WorkerHealth
from fleetkit.worker.liveness import Beacon
from fleetkit.worker.metrics import WorkerMetrics

__all__ = [
    "NOTICE_FILE",
    "FleetJob",
    "FleetWorkerMixin",
    "mean_duration",
]

log = logging.getLogger(__name__)
NOTICE_FILE = "notice.json"
_DUPLICATE_SIGNAL_S = 1.0  # systemd and the supervisor may both deliver one SIGTERM
# A worker heartbeat (default TTL) or idle state written this recently is not written again.
_BEAT_REUSE_S = 1.0


class FleetJob(Job):
    """An rq Job that knows when it is being handed back, so no failure callback fires."""

    handed_back = False
    # The job's hash as last read from Redis: a spare horse is handed this copy, as rq's fork
    # hands its horse the parent's job object.
    fleet_stored: dict[bytes, bytes] | None = None

    def restore(self, raw_data: Any) -> Any:
        self.fleet_stored = raw_data
        return super().restore(raw_data)

    def execute_failure_callback(self, death_penalty_class: Any, *exc_info: Any) -> None:
        if self.handed_back:
            return
        super().execute_failure_callback(death_penalty_class, *exc_info)


def _duration(job: Job) -> float:
    if job.started_at and job.ended_at:
        return max((job.ended_at - job.started_at).total_seconds(), 0.0)
    if job.started_at:
        return max(time.time() - job.started_at.timestamp(), 0.0)
    return 0.0


def _count_ended(pipeline: Any, queue: str, duration: float) -> None:
    # The autoscaler samples these for completion rate and mean duration; producers write nothing.
    pipeline.hincrby(KEYS.queue_stats, f"{queue}:done", 1)
    pipeline.hincrbyfloat(KEYS.queue_stats, f"{queue}:seconds", duration)


def mean_duration(connection: Any, func_name: str) -> float | None:
    """Observed mean duration of a job function, or None before the first run finishes."""
    total, count = connection.hmget(KEYS.durations, f"{func_name}:sum", f"{func_name}:count")
    if not count or int(count) == 0:
        return None
    return float(total) / int(count)


class FleetWorkerMixin:
    """Overrides of rq.BaseWorker hooks; mixed into rq.Worker and rq.SimpleWorker."""

    fleet: dict[str, Any]
    _fleet_dequeued = False  # a dequeue just returned a job (rq's next heartbeat is skipped)
    _fleet_beat_at = float("-inf")  # time.monotonic() of the last default-TTL heartbeat sent
    # rq attributes this mixin uses (declared for type checkers):
    connection: Any
    name: str
    execution: Execution | None
    horse_pid: int
    _is_horse: bool
    _state: str
    _stop_requested: bool

    def configure_fleet(
        self,
        *,
        redis_url: str,
        run_dir: str,
        safety_margin_s: float,
        drain_timeout_s: float,
        stop_on_rebalance: bool,
        heartbeat_ttl_s: float,
        sweep_interval_s: float,
        max_hard_kills: int,
        handback_grace_s: float,
        beat_interval_s: float = 1.0,
        instance_id: str | None = None,
        prefork: bool = True,
    ) -> None:
        self.fleet = {
            "redis_url": redis_url,
            "run_dir": Path(run_dir),
            "safety_margin_s": safety_margin_s,
            "drain_timeout_s": drain_timeout_s,
            "stop_on_rebalance": stop_on_rebalance,
            "heartbeat_ttl_s": heartbeat_ttl_s,
            "sweep_interval_s": sweep_interval_s,
            "max_hard_kills": max_hard_kills,
            "handback_grace_s": handback_grace_s,
            "beat_interval_s": beat_interval_s,
            "instance_id": instance_id,
            "prefork": prefork,
        }
        self._fleet_deadline: float | None = None
        self._fleet_draining = False
        self._fleet_handing_back: str | None = None
        self._fleet_job: FleetJob | None = None
        self._fleet_last_signal = 0.0
        self._fleet_timer: threading.Timer | None = None
        self._fleet_unfinished: str | None = None
        self._fleet_exit_reason = "exception"
        # The job function has returned or raised: from then on it is finished, not handed back.
        self._fleet_completing = False
        self._fleet_pid = os.getpid()  # a forked child runs these handlers until it sets its own
        self.liveness = Liveness(self.connection, ttl_s=heartbeat_ttl_s)
        self.health = WorkerHealth(self.connection, self.name)
        self.metrics = WorkerMetrics(self.connection, self.name)

    # --- lifecycle -------------------------------------------------------------------------

    def work(self, *args: Any, **kwargs: Any) -> bool:
        settings = self.fleet
        beacon = Beacon(
            settings["redis_url"],
            self.name,
            ttl_s=settings["heartbeat_ttl_s"],
            interval_s=settings["beat_interval_s"],
            sweep_interval_s=settings["sweep_interval_s"],
            max_hard_kills=settings["max_hard_kills"],
            job_class=FleetJob,
            on_recovered=self._fleet_recovered,
            instance=settings["instance_id"],
        )
        beacon.start()
        try:
            worked: bool = super().work(*args, **kwargs)  # type: ignore[misc]
            return worked
        finally:
            beacon.stop()
            if self._fleet_timer:
                self._fleet_timer.cancel()
            self._fleet_exit()

    def _fleet_exit(self) -> None:
        """Leave nothing behind: hand back a job rq gave up on (Redis dropped mid-job)."""
        unfinished = self._fleet_unfinished
        try:
            if unfinished is not None:
                self._fleet_hand_back_own(
                    unfinished,
                    f"worker {self.name} stopped mid-job ({self._fleet_exit_reason})",
                )
            self.liveness.forget(self.name)
        except RedisError as exc:
            # Redis is still away: our heartbeat expires and the sweep recovers the job.
            log.warning("worker %s: leaving recovery to the sweep: %s", self.name, exc)

    def _fleet_hand_back_own(self, job_id: str, reason: str) -> Outcome:
        """Hand back a job this worker took, only while it is still this worker's.

        Started: only while its worker is still us (the horse may have handed it back and
        another worker taken it since). Registered but never started (the horse died first):
        only while our execution is still in rq's started registry, which any hand back or
        finish removes.
        """
        outcome = hand_back(
            self.connection, job_id, reason=reason, only_from_worker=self.name, job_class=FleetJob
        )
        composite = self._fleet_execution_key()
        if outcome is Outcome.SKIPPED and composite and composite.startswith(f"{job_id}:"):
            outcome = hand_back(
                self.connection,
                job_id,
                reason=reason,
                job_class=FleetJob,
                allow_queued=True,
                execution=composite,
            )
        return outcome

    def _fleet_recovered(self, recovered: list[Recovered]) -> None:
        self.metrics.jobs_recovered(len(recovered))

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._fleet_on_stop_signal)
        signal.signal(signal.SIGINT, self._fleet_on_stop_signal)
        signal.signal(signal.SIGUSR1, self._fleet_on_notice)
        signal.signal(signal.SIGUSR2, self._fleet_on_deadline)

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
            self._fleet_drain(now + self.fleet["drain_timeout_s"], decide=False)
        else:
            log.warning("worker %s: second stop signal: handing back at once", self.name)
            self._fleet_hand_back_current("second stop signal")

    def _fleet_on_notice(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._fleet_pid:
            return
        path = self.fleet["run_dir"] / NOTICE_FILE
        try:
            notice = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.error("worker %s: unreadable notice %s: %s", self.name, path, exc)
            return
        kind = str(notice.get("kind", ""))
        if kind == "rebalance":
            self.health.set_at_risk("rebalance recommendation")
        if kind == "rebalance" and not self.fleet["stop_on_rebalance"]:
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
        self._fleet_draining = True
        self._stop_requested = True
        if deadline is not None and (
            self._fleet_deadline is None or deadline < self._fleet_deadline
        ):
            self._fleet_deadline = deadline
            self._fleet_arm_timer(deadline - self.fleet["safety_margin_s"])
        job = self._fleet_job
        if job is None:
            raise StopRequested()  # idle: leave the blocking dequeue now
        if deadline is None or (decide and self._fleet_cannot_finish(job, deadline)):
            self._fleet_hand_back_current("termination notice")

    def _fleet_arm_timer(self, at: float) -> None:
        if self._fleet_timer:
            self._fleet_timer.cancel()
        pid = os.getpid()
        timer = threading.Timer(max(at - time.time(), 0.0), os.kill, (pid, signal.SIGUSR2))
        timer.daemon = True
        timer.start()
        self._fleet_timer = timer

    def _fleet_cannot_finish(self, job: FleetJob, deadline: float) -> bool:
        started = job.started_at.timestamp() if job.started_at else time.time()
        timeout = job.timeout if job.timeout and job.timeout > 0 else None
        return should_hand_back(
            now=time.time(),
            started_at=started,
            deadline=deadline,
            safety_margin_s=self.fleet["safety_margin_s"],
            mean_duration_s=mean_duration(self.connection, job.func_name or ""),
            timeout_s=timeout,
        )

    def _fleet_hand_back_current(self, reason: str) -> None:
        raise NotImplementedError

    # --- rq hooks ------------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        assert isinstance(job, FleetJob)
        if self._fleet_draining:
            # Dequeued just as the drain began: never started, so it simply goes back.
            hand_back(
                self.connection,
                job.id,
                reason=f"dequeued by {self.name} as it began to drain",
                job_class=FleetJob,
                allow_queued=True,
            )
            raise StopRequested()
        self._fleet_job = job
        self._fleet_unfinished = job.id
        self._fleet_completing = False
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
            self._fleet_unfinished = None
        except BaseException as exc:
            self._fleet_exit_reason = type(exc).__name__
            raise
        finally:
            # The in-flight record is cleared in the pipeline that ends the job (or by the
            # hand back), so it doubles as "busy" for the autoscaler's choice of idle instances.
            self._fleet_job = None
            self._fleet_handing_back = None

    def reorder_queues(self, reference_queue: Queue) -> None:
        # rq calls this only when a dequeue returned a job.
        super().reorder_queues(reference_queue)  # type: ignore[misc]
        self._fleet_dequeued = True

    # Between one job's end and the next dequeue rq writes the worker's idle state twice and its
    # heartbeat twice, each heartbeat as two commands: six round trips a job. Here the first
    # idle state goes with a heartbeat in one round trip, and the repeats that follow within
    # `_BEAT_REUSE_S` are not sent again (same values, same TTL).

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is None and self._fleet_dequeued:
            # rq beats once more right after a dequeue, a round trip on every job's way to its
            # start; the job's start, a moment later, carries the same heartbeat.
            self._fleet_dequeued = False
            return
        if pipeline is not None or timeout is not None:
            super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        elif not self._fleet_beat_is_fresh():
            self._fleet_send_beat(idle=False)

    def _fleet_beat_is_fresh(self) -> bool:
        return time.monotonic() - self._fleet_beat_at < _BEAT_REUSE_S

    def _fleet_send_beat(self, *, idle: bool) -> None:
        """A default-TTL heartbeat, with the idle state if `idle`, in one round trip."""
        with self.connection.pipeline(transaction=False) as pipe:
            if idle:
                super().set_state(WorkerStatus.IDLE, pipeline=pipe)  # type: ignore[misc]
            super().heartbeat(None, pipe)  # type: ignore[misc]
            pipe.execute()
        self._fleet_beat_at = time.monotonic()

    # Our bookkeeping rides in the pipelines rq already sends at job start and end, each time as
    # one EVAL (`worker.batch`).

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == WorkerStatus.IDLE:
            if self._state != WorkerStatus.IDLE or not self._fleet_beat_is_fresh():
                self._fleet_send_beat(idle=True)
            return
        super().set_state(state, pipeline=pipeline)  # type: ignore[misc]
        job = self._fleet_job
        if state == WorkerStatus.BUSY and pipeline is not None and job is not None:
            # In the transaction that registers rq's execution: from the moment rq knows the
            # job runs here, the sweep knows too, so a hard kill is recovered, never left for
            # rq's lease expiry to fail as abandoned.
            pipeline.hset(KEYS.inflight, self.name, job.id)

    def set_current_job_id(self, job_id: str | None = None, pipeline: Any = None) -> None:
        super().set_current_job_id(job_id, pipeline=pipeline)  # type: ignore[misc]
        job = self._fleet_job
        if job_id is None or pipeline is None or job is None or job.id != job_id:
            return
        pickup = time.time() - job.enqueued_at.timestamp() if job.enqueued_at else None
        batch = WriteBatch()
        self.metrics.job_started(pickup, cast(Any, batch))
        batch.add_to(pipeline)

    def increment_successful_job_count(self, pipeline: Any = None) -> None:
        super().increment_successful_job_count(pipeline)  # type: ignore[misc]
        job = self._fleet_job
        if job is None or pipeline is None:
            return
        duration = _duration(job)
        batch = WriteBatch()
        batch.hdel(KEYS.inflight, self.name)
        batch.hincrbyfloat(KEYS.durations, f"{job.func_name}:sum", duration)
        batch.hincrby(KEYS.durations, f"{job.func_name}:count", 1)
        _count_ended(batch, job.origin, duration)
        self.metrics.job_finished(duration, cast(Any, batch))
        self.health.record_job(True, pipe=cast(Any, batch))
        batch.add_to(pipeline)

    def increment_failed_job_count(self, pipeline: Any = None) -> None:
        super().increment_failed_job_count(pipeline)  # type: ignore[misc]
        job = self._fleet_job
        if job is None or pipeline is None:
            return
        duration = _duration(job)
        batch = WriteBatch()
        batch.hdel(KEYS.inflight, self.name)
        _count_ended(batch, job.origin, duration)
        self.metrics.job_failed(duration, cast(Any, batch))
        self.health.record_job(False, pipe=cast(Any, batch))
        batch.add_to(pipeline)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if getattr(job, "handed_back", False):
            return  # not a failure: exception handlers (Sentry, …) stay quiet
        super().handle_exception(job, *exc_info)  # type: ignore[misc]

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        handing_back = getattr(job, "handed_back", False) or self._fleet_handing_back == job.id
        if handing_back:
            self._fleet_finish_hand_back(job, self._fleet_handing_back_reason())
            return
        if self._fleet_job is None or self._fleet_job.id != job.id:
            # rq's maintenance reports a job this worker is not running (stuck in the
            # intermediate list). Never started: it did not fail, it goes back. Started: its own
            # worker (or the sweep, if that worker is dead) owns it. Finished: a stale copy.
            if job.get_status(refresh=True) == JobStatus.QUEUED:
                hand_back(
                    self.connection,
                    job.id,
                    reason="dequeued by a worker that never started it",
                    allow_queued=True,
                    job_class=FleetJob,
                )
            return
        if not self._is_horse and job.get_status(refresh=True) == JobStatus.QUEUED:
            # Our work horse died before the job started (killed, out of memory): the job never
            # ran, so it goes back; counted like a hard kill so a job that kills every horse
            # still ends in the failed registry.
            self._fleet_hand_back_unstarted(job, f"work horse died before starting: {exc_string}")
            return
        super().handle_job_failure(job, queue, started_job_registry, exc_string)  # type: ignore[misc]

    def _fleet_hand_back_unstarted(self, job: Job, reason: str) -> None:
        outcome = hand_back(
            self.connection,
            job.id,
            reason=reason,
            job_class=FleetJob,
            allow_queued=True,
            execution=self._fleet_execution_key(),
            hard_kill=True,
            max_hard_kills=self.fleet["max_hard_kills"],
        )
        log.warning("worker %s: job %s %s: %s", self.name, job.id, outcome.value, reason)
        self._fleet_release_job()

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        self._fleet_completing = True
        super().handle_execution_ended(job, queue, heartbeat_ttl)  # type: ignore[misc]

    def _fleet_handing_back_reason(self) -> str:
        return f"handed back by {self.name} before termination"

    def _fleet_finish_hand_back(self, job: Job, reason: str) -> None:
        outcome = self._fleet_hand_back_own(job.id, reason)
        if outcome is Outcome.REQUEUED:
            log.warning("worker %s: job %s handed back to %s", self.name, job.id, job.origin)
            self.metrics.job_handed_back()
        self._fleet_release_job()

    def _fleet_release_job(self) -> None:
        """This worker no longer runs a job: neither for rq nor for the sweep."""
        with self.connection.pipeline() as pipe:
            self.set_current_job_id(None, pipeline=pipe)
            pipe.hdel(KEYS.inflight, self.name)
            pipe.execute()

    def _fleet_execution_key(self) -> str | None:
        """rq's `<job id>:<execution id>` of the execution this worker registered, if any."""
        execution = self.execution
        return execution.composite_key if execution is not None else None
