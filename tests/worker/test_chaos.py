"""Scaled-down chaos: workers given notices and workers SIGKILLed while a batch runs.

Every job must finish; none may be lost or failed; a job may run more than once only because it
was handed back (recorded in its meta) or because a worker running it was hard-killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from fleetkit.core.handback import HANDBACK_META
from tests.worker import jobs
from tests.worker.procs import kill_group, settings, start_worker, stop, wait_for

pytestmark = pytest.mark.e2e

JOBS = 80
WORKERS = 6


def test_chaos_no_job_lost_none_failed(redis_url: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    redis = Redis.from_url(redis_url)
    queue = Queue("default", connection=redis)
    enqueued = [queue.enqueue(jobs.slow, rng.uniform(0.2, 1.2)) for _ in range(JOBS)]
    workers: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    killed: set[str] = set()
    noticed: set[str] = set()

    def spawn(index: int) -> None:
        run_dir = tmp_path / f"w{index}"
        run_dir.mkdir()
        config = settings(redis_url, run_dir, forking=index % 2 == 0)
        name, process = start_worker(config)
        workers[name] = (process, run_dir)

    for index in range(WORKERS):
        spawn(index)
    try:
        wait_for(lambda: redis.llen(queue.key) < JOBS - WORKERS, 30, "workers to start")
        victims = rng.sample(sorted(workers), 4)
        for round_, name in enumerate(victims):
            time.sleep(1.0)
            process, run_dir = workers[name]
            if round_ % 2 == 0:
                kill_group(process)
                killed.add(name)
            else:
                # Inside the safety margin: whatever runs there must be handed back.
                notice = {"kind": "spot-interruption", "deadline": time.time() + 0.5}
                (run_dir / "notice.json").write_text(json.dumps(notice))
                os.kill(process.pid, signal.SIGUSR1)
                noticed.add(name)
            spawn(WORKERS + round_)  # the autoscaler's replacement

        def all_finished() -> bool:
            return all(j.get_status(refresh=True) == JobStatus.FINISHED for j in enqueued)

        wait_for(all_finished, 120, "every job to finish")
    finally:
        for process, _ in workers.values():
            stop(process)

    assert len(FailedJobRegistry(queue=queue)) == 0
    assert queue.count == 0
    kinds: list[bool] = []
    for job in enqueued:
        fresh = Job.fetch(job.id, connection=redis)
        ran_on = [w.decode() for w in redis.lrange(f"test:ran-on:{job.id}", 0, -1)]
        handbacks = fresh.meta.get(HANDBACK_META, [])
        assert len(ran_on) == 1 + len(handbacks), (job.id, ran_on, handbacks)
        kinds += [record["hard_kill"] for record in handbacks]
        for earlier, record in zip(ran_on, handbacks, strict=False):
            if record["hard_kill"]:
                assert earlier in killed, (job.id, earlier, record)
            else:
                assert earlier in noticed, (job.id, earlier, record)
    # The chaos really hit running jobs: both kinds of interruption happened.
    assert True in kinds and False in kinds, kinds
