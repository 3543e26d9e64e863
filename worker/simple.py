"""The non-forking worker: jobs run in the worker process (rq.SimpleWorker)."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from fleetkit.worker.batch import WriteBatch
from fleetkit.worker.errors import ShutDownImminent
from fleetkit.worker.fleet_worker import FleetWorkerMixin
from fleetkit.worker.job import FleetJob

__all__ = ["FleetSimpleWorker"]

log = logging.getLogger(__name__)


class FleetSimpleWorker(FleetWorkerMixin, SimpleWorker):
    """Runs jobs in its own process (rq.SimpleWorker); the job is interrupted in place."""

    _fleet_pending: WriteBatch | None = None  # the execution's writes, sent with the job's start
    _fleet_started: str | None = None  # the job whose start has reached Redis

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._fleet_started = None
        super().execute_job(job, queue)

    def prepare_execution(self, job: Job) -> Execution:
        # rq sends the execution's registration and, a moment later in the same process, the
        # job's start as two transactions of some twenty commands. Here nothing runs between
        # them, so rq's own calls are recorded and sent as one EVAL (`worker.batch`): one
        # command to pack and one reply to read on every job's way to its start, and no
        # instant where rq lists the execution but the job is not yet marked started.
        batch = WriteBatch()
        self.execution = Execution.create(
            job, self.get_heartbeat_ttl(job), pipeline=cast(Any, batch), worker_name=self.name
        )
        self.set_state(WorkerStatus.BUSY, pipeline=batch)
        self._fleet_pending = batch
        return self.execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        batch = self._fleet_pending
        if batch is None:
            super().prepare_job_execution(job, remove_from_intermediate_queue)
            return
        # rq's prepare_job_execution, on the writes prepare_execution recorded.
        self._fleet_pending = None
        self._fleet_send_start(batch, job, remove_from_intermediate_queue)
        self._fleet_started = job.id
        if self._fleet_handing_back(job.id) and isinstance(job, FleetJob):
            # A notice came before the start reached Redis: now that rq lists the execution,
            # the hand back can find it.
            job.handed_back = True
            raise ShutDownImminent(f"job {job.id} is being handed back")
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")

    def _fleet_send_start(
        self, batch: WriteBatch, job: Job, remove_from_intermediate_queue: bool
    ) -> None:
        # rq's own calls, so rq decides what is written. No other client sees the writes half
        # done, as with rq's MULTI/EXEC; a command that fails stops the script where MULTI/EXEC
        # would go on with the rest (none of these fails on keys of the right type).
        pipeline = cast(Any, batch)
        self.set_current_job_id(job.id, pipeline=pipeline)
        self.set_current_job_working_time(0, pipeline=pipeline)
        heartbeat_ttl = self.get_heartbeat_ttl(job)
        self.heartbeat(heartbeat_ttl, pipeline=pipeline)
        job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
        job.prepare_for_execution(self.name, pipeline=pipeline)
        if remove_from_intermediate_queue:
            queue = Queue(job.origin, connection=self.connection)
            batch.lrem(queue.intermediate_queue_key, 1, job.id)
        batch.add_to(self.connection)

    def _fleet_hand_back_current(self, reason: str) -> None:
        job = self._fleet_job
        if job is None or job.handed_back or self._fleet_completing:
            return  # idle, already going back, or the job function has already ended
        if self._fleet_started != job.id:
            # Its start has not reached Redis: interrupting now would leave the job registered
            # nowhere. `prepare_job_execution` hands it back as soon as it has.
            self._fleet_begin_hand_back()
            return
        log.warning("worker %s: handing back job %s (%s)", self.name, job.id, reason)
        job.handed_back = True
        self._fleet_begin_hand_back()
        raise ShutDownImminent(f"job {job.id} is being handed back")
