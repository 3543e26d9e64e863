"""Heartbeats, the dead-worker claim and the sweep, against a real redis-server."""

from __future__ import annotations

import threading
import time

from redis import Redis
from rq.job import Job, JobStatus

from fleetkit.core.handback import Outcome
from fleetkit.core.liveness import Liveness
from fleetkit.core.schema import KEYS
from fleetkit.worker.job import FleetJob
from tests.core.test_handback import running_job

TTL = 1.0


def test_beat_records_the_instance_and_forget_clears_everything(redis: Redis) -> None:
    liveness = Liveness(redis, ttl_s=TTL)
    liveness.beat("w1", "i-0123456789abcdef0")
    redis.hset(KEYS.inflight, "w1", "job-1")
    assert redis.hget(KEYS.instances, "w1") == b"i-0123456789abcdef0"
    assert redis.zscore(KEYS.heartbeats, "w1") is not None

    liveness.forget("w1")

    assert redis.hget(KEYS.instances, "w1") is None
    assert redis.hget(KEYS.inflight, "w1") is None
    assert redis.zscore(KEYS.heartbeats, "w1") is None


def test_a_live_worker_cannot_be_claimed_and_a_dead_one_only_once(redis: Redis) -> None:
    liveness = Liveness(redis, ttl_s=TTL)
    liveness.beat("w1")
    assert liveness.claim("w1") is False  # alive

    time.sleep(TTL + 0.1)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(liveness.claim("w1"))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, True]
    assert liveness.claim("unknown") is False


def test_a_sweeper_dying_after_its_claim_leaves_the_job_to_the_next_sweep(redis: Redis) -> None:
    liveness = Liveness(redis, ttl_s=TTL)
    job = running_job(redis, worker="w1")
    liveness.beat("w1")
    redis.hset(KEYS.inflight, "w1", job.id)
    time.sleep(TTL + 0.1)

    assert liveness.claim("w1") is True  # ... and this sweeper dies before recovering
    assert liveness.sweep(max_hard_kills=3, job_class=FleetJob) == []  # claim still fresh

    time.sleep(TTL + 0.1)
    recovered = liveness.sweep(max_hard_kills=3, job_class=FleetJob)

    assert [(r.worker, r.job_id, r.outcome) for r in recovered] == [
        ("w1", job.id, Outcome.REQUEUED)
    ]
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED
    assert redis.zscore(KEYS.heartbeats, "w1") is None
