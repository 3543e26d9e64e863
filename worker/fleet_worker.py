"""rq workers that hand their job back instead of losing it when the instance goes away.

Both variants share one mixin that overrides rq's own hooks; rq's job loop is not copied. The
variants live beside this module: `worker.forking.FleetWorker` (a horse per job) and
`worker.simple.FleetSimpleWorker` (jobs in the worker process). The mixin's parts, each in a
module of its own: the drain (`worker.drain`: signals, decisions, the deadline), the per-job
records (`worker.bookkeeping`) and the heartbeat (`worker.beacon.Beacon`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from redis.exceptions import RedisError
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.worker import WorkerStatus

from fleetkit.core.handback import Outcome, hand_back
from fleetkit.core.liveness import Liveness, Recovered
from fleetkit.core.redis_io import fail_fast_client
from fleetkit.worker.beacon import Beacon
from fleetkit.worker.bookkeeping import JobBookkeeping
from fleetkit.worker.drain import DrainMixin
from fleetkit.worker.job import FleetJob
from fleetkit.worker.options import FleetOptions
from fleetkit.worker.outage import RQ_LOGGER, RedisOutage

__all__ = ["FleetWorkerMixin"]

log = logging.getLogger(__name__)
# A worker heartbeat (default TTL) or idle state written this recently is not written again.
_BEAT_REUSE_S = 1.0


class FleetWorkerMixin(DrainMixin):
    """Overrides of rq.BaseWorker hooks; mixed into rq.Worker and rq.SimpleWorker."""

    _fleet_dequeued = False  # a dequeue just returned a job (rq's next heartbeat is skipped)
    _fleet_beat_at = float("-inf")  # time.monotonic() of the last default-TTL heartbeat sent
    # rq attributes this mixin uses (declared for type checkers):
    execution: Execution | None
    horse_pid: int
    _is_horse: bool
    _state: str

    def configure_fleet(self, options: FleetOptions, *, outage: RedisOutage | None = None) -> None:
        """Set the fleet options; call once, after rq's constructor and before `work`.

        `outage`: the process's record of Redis outages (one is made if not given).
        """
        self.options = options
        self.redis_outage = outage if outage is not None else RedisOutage(self.name)
        self._fleet_job: FleetJob | None = None
        self._fleet_unfinished: str | None = None
        self._fleet_exit_reason = "exception"
        # The job function has returned or raised: from then on it is finished, not handed back.
        self._fleet_completing = False
        self._fleet_pid = os.getpid()
        self.liveness = Liveness(self.connection, ttl_s=options.heartbeat_ttl_s)
        self.bookkeeping = JobBookkeeping(self.connection, self.name)

    # --- lifecycle -------------------------------------------------------------------------

    def work(self, *args: Any, **kwargs: Any) -> bool:
        options = self.options
        beacon = Beacon(
            options.redis_url,
            self.name,
            ttl_s=options.heartbeat_ttl_s,
            interval_s=options.beat_interval_s,
            sweep_interval_s=options.sweep_interval_s,
            max_hard_kills=options.max_hard_kills,
            job_class=FleetJob,
            on_recovered=self._fleet_recovered,
            instance=options.instance_id,
            outage=self.redis_outage,
        )
        rq_log = logging.getLogger(RQ_LOGGER)
        rq_log.addFilter(self.redis_outage)
        beacon.start()
        try:
            worked: bool = super().work(*args, **kwargs)  # type: ignore[misc]
            return worked
        finally:
            beacon.stop()
            self._fleet_cancel_timer()
            self._fleet_exit()
            rq_log.removeFilter(self.redis_outage)

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
            # Redis is still away: the supervisor (when Redis answers) or, after our heartbeat
            # expires, the sweep recovers the job.
            self.redis_outage.failed(exc)

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
        self.bookkeeping.metrics.jobs_recovered(len(recovered))

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
            self._fleet_job_ended()
            self._fleet_job = None

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
    # one EVAL (`worker.bookkeeping`).

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
            self.bookkeeping.running(job, pipeline)

    def set_current_job_id(self, job_id: str | None = None, pipeline: Any = None) -> None:
        super().set_current_job_id(job_id, pipeline=pipeline)  # type: ignore[misc]
        job = self._fleet_job
        if job_id is None or pipeline is None or job is None or job.id != job_id:
            return
        self.bookkeeping.started(job, pipeline)

    def increment_successful_job_count(self, pipeline: Any = None) -> None:
        super().increment_successful_job_count(pipeline)  # type: ignore[misc]
        job = self._fleet_job
        if job is not None and pipeline is not None:
            self.bookkeeping.finished(job, pipeline)

    def increment_failed_job_count(self, pipeline: Any = None) -> None:
        super().increment_failed_job_count(pipeline)  # type: ignore[misc]
        job = self._fleet_job
        if job is not None and pipeline is not None:
            self.bookkeeping.failed(job, pipeline)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        if getattr(job, "handed_back", False):
            return  # not a failure: exception handlers (Sentry, …) stay quiet
        error = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(error, RedisError) and not self._fleet_redis_answers():
            # Redis went away under the job or its end: an outage, said once (by the worker, not
            # its horse), not the job's failure (which could not be recorded anyway); the job is
            # recovered when Redis answers.
            if not self._is_horse:
                self.redis_outage.failed(error)
            return
        super().handle_exception(job, *exc_info)  # type: ignore[misc]

    def _fleet_redis_answers(self) -> bool:
        probe = fail_fast_client(self.options.redis_url)
        try:
            return bool(probe.ping())
        except RedisError:
            return False
        finally:
            probe.close()

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        if getattr(job, "handed_back", False) or self._fleet_handing_back(job.id):
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
            max_hard_kills=self.options.max_hard_kills,
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
            self.bookkeeping.metrics.job_handed_back()
        self._fleet_release_job()

    def _fleet_release_job(self) -> None:
        """This worker no longer runs a job: neither for rq nor for the sweep."""
        with self.connection.pipeline() as pipe:
            self.set_current_job_id(None, pipeline=pipe)
            self.bookkeeping.released(pipe)
            pipe.execute()

    def _fleet_execution_key(self) -> str | None:
        """rq's `<job id>:<execution id>` of the execution this worker registered, if any."""
        execution = self.execution
        return execution.composite_key if execution is not None else None
