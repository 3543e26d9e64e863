"""The forking worker: a work horse per job, forked before the job arrives.

rq forks the horse after it has dequeued the job, so every job waits for the fork and for the
horse's first Redis connection: on a 2-vCPU VM that is 12-14 ms of a 19 ms pickup, measured
(docs/benchmarks.md). `FleetWorker` keeps one *spare* horse forked ahead: it has connected to
Redis and waits on a pipe. A dequeued job goes to the spare (one small write), and the next spare
is forked while the job runs, off the job's path. Each job still runs in a fresh process of its
own, forked from the same parent state as rq's, with rq's own `main_work_horse`.

The spare never holds a job until the parent writes one: a spare whose parent dies reads EOF
and exits; a spare that died is replaced by an ordinary fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import pickle
import signal
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from rq.exceptions import NoSuchJobError, StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from fleetkit.worker.errors import ShutDownImminent
from fleetkit.worker.fleet_worker import FleetWorkerMixin
from fleetkit.worker.job import FleetJob

__all__ = ["FleetWorker"]

log = logging.getLogger(__name__)
_PIPE_SAFE_BYTES = 32 * 1024  # well under Linux's 64 KiB pipe buffer
_REHEARSAL_JOB = "fleetkit-spare-rehearsal"  # never exists: fetching it only warms the path


@dataclass
class _Spare:
    pid: int
    pipe: int  # write end; closing it tells a waiting spare to exit

    def alive(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def send(self, message: dict[str, Any]) -> bool:
        """Hand the spare its job; False when it is gone (then nothing was handed)."""
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(payload) > _PIPE_SAFE_BYTES and message.get("stored"):
            # A large job is read from Redis by the spare instead: a message that fits the
            # pipe's buffer never blocks the worker, whatever state the spare is in.
            payload = pickle.dumps({**message, "stored": None}, protocol=pickle.HIGHEST_PROTOCOL)
        data = struct.pack("!Q", len(payload)) + payload
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.pipe, view) :]
        except OSError:
            return False
        finally:
            self._close_pipe()
        return True

    def discard(self) -> None:
        """Stop a spare that was never handed a job (it holds nothing to finish)."""
        self._close_pipe()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def _close_pipe(self) -> None:
        # Once only: a second close could hit a descriptor another thread has opened since.
        if self.pipe >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pipe)
            self.pipe = -1


def _read_message(fd: int) -> dict[str, Any] | None:
    """The job the worker handed over, or None when it closed the pipe without one."""
    header = _read_exactly(fd, 8)
    if header is None:
        return None
    payload = _read_exactly(fd, struct.unpack("!Q", header)[0])
    if payload is None:
        return None
    message: dict[str, Any] = pickle.loads(payload)  # from our own parent process
    return message


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FleetWorker(FleetWorkerMixin, Worker):
    """Forks a work horse per job (rq.Worker); the horse is interrupted on hand back."""

    _fleet_frozen = False
    _fleet_spare: _Spare | None = None
    _fleet_signalled: tuple[str, int] | None = None  # (job, horse) told to hand back

    def work(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().work(*args, **kwargs)
        finally:
            self._fleet_discard_spare()

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        if self._fleet_handing_back(job.id):
            # The notice came between dequeue and fork: no horse to interrupt, so none is
            # started. The loop stops here and `_fleet_exit` hands the job back.
            raise StopRequested()
        if not self._fleet_frozen:
            # Move everything the parent built so far (modules, clients) out of the collector's
            # reach, once: a horse's garbage collection then no longer writes to those pages, so
            # the fork copies fewer of them. Later per-job objects are collected as usual.
            gc.freeze()
            self._fleet_frozen = True
        if not self._fleet_dispatch_to_spare(job, queue):
            super().fork_work_horse(job, queue)
        # A hand back asked for while the horse had no pid yet is carried out now.
        self._fleet_signal_horse()
        if self.options.prefork and not self._fleet_draining:
            self._fleet_spare = self._fleet_fork_spare()

    def _fleet_dispatch_to_spare(self, job: Job, queue: Queue) -> bool:
        spare, self._fleet_spare = self._fleet_spare, None
        if spare is None:
            return False
        execution = self.execution
        message = {
            "job": job.id,
            "stored": getattr(job, "fleet_stored", None),
            "queue": queue.name,
            "execution": execution.id if execution else None,
            "created_at": execution.created_at.timestamp() if execution else None,
        }
        if not spare.alive() or not spare.send(message):
            spare.discard()
            return False
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = job.id
        self._horse_pid = spare.pid
        self.procline(f"Handed {job.id} to spare horse {spare.pid}")
        return True

    def _fleet_fork_spare(self) -> _Spare | None:
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            log.warning("worker %s: no spare horse (%s); forking per job", self.name, exc)
            return None
        if pid == 0:  # pragma: no cover - runs in the child, which leaves with os._exit
            os.close(write_end)
            try:
                self._fleet_spare_main(read_end)
            finally:
                os._exit(1)
        os.close(read_end)
        return _Spare(pid=pid, pipe=write_end)

    def _fleet_spare_main(self, pipe: int) -> None:  # pragma: no cover - child process
        os.setpgrp()
        self.setup_work_horse_signals()
        # Nothing of the job the parent was running when it forked this spare is ours.
        self._fleet_job = None
        self._fleet_job_ended()
        self._fleet_unfinished = None
        self._fleet_interrupt_pending = False
        self.execution = None
        _die_with_parent(self._fleet_pid)
        self._fleet_own_connection()
        self._fleet_rehearse()
        message = _read_message(pipe)
        os.close(pipe)
        if message is None:
            os._exit(0)  # the parent went away or stopped without a job for us
        os.environ["RQ_JOB_ID"] = message["job"]
        job = self._fleet_job_from(message)
        self._fleet_job = job  # from here on, a hand back signal interrupts this job
        if self._fleet_interrupt_pending:
            # Asked to stop before the job started: leave it unstarted; the parent hands it
            # back (its execution is registered, its status still queued).
            os._exit(1)
        queue = next((q for q in self.queues if q.name == message["queue"]), None)
        if queue is None:
            queue = self.queue_class(
                message["queue"],
                connection=self.connection,
                job_class=self.job_class,
                serializer=self.serializer,
            )
        if message["execution"]:
            execution = Execution(
                message["execution"], job.id, self.connection, worker_name=self.name
            )
            started = datetime.fromtimestamp(message["created_at"], tz=UTC)
            execution.created_at = execution.last_heartbeat = started
            self.execution = execution
        self.main_work_horse(job, queue)

    def _fleet_job_from(self, message: dict[str, Any]) -> FleetJob:  # pragma: no cover - child
        """The worker's copy of the job; read from Redis only if there is none."""
        job = self.job_class(message["job"], connection=self.connection, serializer=self.serializer)
        if message.get("stored"):
            job.restore(message["stored"])
        else:
            job.refresh()
        assert isinstance(job, FleetJob)
        return job

    def _fleet_own_connection(self) -> None:  # pragma: no cover - child process
        """A connection pool of the spare's own, with nothing inherited from the parent.

        The parent's pool may have been locked by one of its threads at the instant of the
        fork; a child that reset it would wait on that lock forever.
        """
        pool = self.connection.connection_pool
        fresh = type(self.connection)(
            connection_pool=type(pool)(
                connection_class=pool.connection_class,
                max_connections=pool.max_connections,
                **pool.connection_kwargs,
            )
        )
        self.connection = fresh
        self.queues = [
            self.queue_class(
                q.name, connection=fresh, job_class=self.job_class, serializer=self.serializer
            )
            for q in self.queues
        ]

    def _fleet_rehearse(self) -> None:  # pragma: no cover - child process
        """Walk the job's first steps once, read-only, before there is a job.

        Connecting and the first pass through redis-py's and rq's code cost the new process
        page copies (its memory is shared with the worker until written) and round trips; done
        here, they are not on the next job's clock.
        """
        with contextlib.suppress(Exception):
            self.connection.ping()
            with contextlib.suppress(NoSuchJobError):
                self.job_class.fetch(
                    _REHEARSAL_JOB, connection=self.connection, serializer=self.serializer
                )
            with self.connection.pipeline() as pipeline:
                pipeline.exists(self.key)
                pipeline.ttl(self.key)
                pipeline.execute()

    def _fleet_discard_spare(self) -> None:
        spare, self._fleet_spare = self._fleet_spare, None
        if spare is not None:
            spare.discard()

    def _fleet_hand_back_current(self, reason: str) -> None:
        job = self._fleet_job
        if job is None:
            return
        if not self._fleet_handing_back(job.id):
            log.warning("worker %s: handing back job %s (%s)", self.name, job.id, reason)
            self._fleet_begin_hand_back()
        self._fleet_signal_horse()

    def _fleet_signal_horse(self) -> None:
        """Tell the horse of a job being handed back, once per horse."""
        job, horse = self._fleet_job, self.horse_pid
        if job is None or not self._fleet_handing_back(job.id) or not horse:
            return
        if self._fleet_signalled == (job.id, horse):
            return
        self._fleet_signalled = (job.id, horse)
        os.kill(horse, signal.SIGUSR1)
        # A job that ignores ShutDownImminent (stuck in C, swallows BaseException) is killed;
        # the parent then hands it back itself in handle_job_failure.
        timer = threading.Timer(self.options.handback_grace_s, self._kill_horse_if_still, (horse,))
        timer.daemon = True
        timer.start()

    def _kill_horse_if_still(self, pid: int) -> None:
        # Only the same horse: once reaped, its pid may belong to someone else.
        if self.horse_pid == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def setup_work_horse_signals(self) -> None:
        # The horse ignores stop signals (systemd sends them to the whole group): the parent
        # decides, and tells the horse with SIGUSR1.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, self._horse_interrupted)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        assert isinstance(job, FleetJob)
        self._fleet_job = job
        self._fleet_completing = False
        result: bool = super().perform_job(job, queue)
        return result

    def main_work_horse(self, job: Job, queue: Queue) -> None:  # pragma: no cover - child
        # A horse whose worker died would run on while the sweep hands its job to another
        # worker: the same job twice at once. It goes with its worker instead.
        _die_with_parent(self._fleet_pid)
        super().main_work_horse(job, queue)

    def _horse_interrupted(self, signum: int, frame: FrameType | None) -> None:
        job = self._fleet_job
        if job is None:
            self._fleet_interrupt_pending = True  # a spare that has not read its job yet
            return
        if job.handed_back or self._fleet_completing:
            return  # the job function has ended: it is finishing, not being handed back
        job.handed_back = True
        self._fleet_begin_hand_back()
        raise ShutDownImminent(f"job {job.id} is being handed back")


_PR_SET_PDEATHSIG = 1
try:  # loaded once here: the children that use it should not pay for loading it
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent(parent: int) -> None:  # pragma: no cover - child process
    """SIGKILL this process when the worker that forked it dies (Linux); exit if it already has."""
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
