"""One worker process, started by the supervisor: `python -m fleetkit.worker.process SETTINGS NAME`
(SETTINGS: the WorkerSettings as JSON)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError
from rq.queue import Queue

from fleetkit.core.redis_io import describe, unreachable
from fleetkit.worker.forking import FleetWorker
from fleetkit.worker.job import FleetJob
from fleetkit.worker.options import FleetOptions
from fleetkit.worker.outage import REDIS_UNREACHABLE_EXIT, RedisOutage
from fleetkit.worker.simple import FleetSimpleWorker

if TYPE_CHECKING:
    from fleetkit.worker.settings import WorkerSettings

__all__ = ["build_worker", "main"]

log = logging.getLogger(__name__)


def build_worker(
    settings: WorkerSettings | Any, name: str, *, outage: RedisOutage | None = None
) -> FleetWorker | FleetSimpleWorker:
    """`settings` is a WorkerSettings, or its JSON dump as attributes (see `main`)."""
    # No CLIENT SETINFO on connect: two round trips less for every work horse, which opens a
    # connection of its own.
    connection = Redis.from_url(settings.redis_url, lib_name=None, lib_version=None)
    queues = [Queue(q, connection=connection, job_class=FleetJob) for q in settings.queues]
    worker_class = FleetWorker if settings.forking else FleetSimpleWorker
    worker = worker_class(
        queues,
        name=name,
        connection=connection,
        job_class=FleetJob,
        # Idle workers come back from the blocking dequeue every few seconds.
        worker_ttl=20,
        # rq's own sweep of its registries (intermediate lists, expired leases).
        maintenance_interval=60,
    )
    worker.configure_fleet(
        FleetOptions(
            redis_url=settings.redis_url,
            run_dir=Path(settings.run_dir or "."),
            safety_margin_s=settings.safety_margin_s,
            drain_timeout_s=settings.drain_timeout_s,
            stop_on_rebalance=settings.stop_on_rebalance,
            heartbeat_ttl_s=settings.heartbeat_ttl_s,
            sweep_interval_s=settings.sweep_interval_s,
            max_hard_kills=settings.max_hard_kills,
            handback_grace_s=settings.handback_grace_s,
            instance_id=settings.instance_id,
            prefork=settings.prefork,
        ),
        outage=outage,
    )
    return worker


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # The supervisor validated these with WorkerSettings and passes every field. Reading them
    # back without pydantic keeps ~10 MB out of the process that forks once per job.
    settings = SimpleNamespace(**json.loads(args[0]))
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    outage = RedisOutage(args[1])
    try:
        worker = build_worker(settings, args[1], outage=outage)
        worker.work(burst=settings.burst, logging_level=settings.log_level)
    except RedisError as exc:
        if not unreachable(exc):
            # Redis answered and refused (read-only replica, out of memory, a permission): no
            # wait mends that, so it is a crash, restarted with backoff.
            log.error("worker %s: stopped: Redis %s", args[1], describe(exc))
            raise SystemExit(1) from None
        # Redis went away where rq does not retry (connecting, a job's end, the teardown):
        # the supervisor starts this worker again when Redis answers.
        outage.failed(exc)
        raise SystemExit(REDIS_UNREACHABLE_EXIT) from None
    if outage.down:  # rq's loop stopped on a Redis that could not be reached
        raise SystemExit(REDIS_UNREACHABLE_EXIT)


if __name__ == "__main__":
    main()
