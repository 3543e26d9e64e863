"""Heartbeats, the dead-worker claim and the sweep, against a real redis-server."""

from __future__ import annotations

import threading
import time

from redis import Redis
from rq.job import Job, JobStatus

from fleetkit.worker.fleet_worker import FleetJob
from fleetkit.worker.handback import Outcome
from fleetkit.worker.liveness import Beacon, Liveness
from tests.worker.test_handback import running_job

TTL = 1.0


def test_beat_records_the_instance_and_forget_clears_everything(redis: Redis) -> None:
    liveness = Liveness(redis, ttl_s=TTL)
    liveness.beat("w1", "i-0123456789abcdef0")
    redis.hset(liveness.inflight_key, "w1", "job-1")
    assert redis.hget(liveness.instances_key, "w1") == b"i-0123456789abcdef0"
    assert redis.zscore(liveness.heartbeats_key, "w1") is not None

    liveness.forget("w1")

    assert redis.hget(liveness.instances_key, "w1") is None
    assert redis.hget(liveness.inflight_key, "w1") is None
    assert redis.zscore(liveness.heartbeats_key, "w1") is None


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
    redis.hset(liveness.inflight_key, "w1", job.id)
    time.sleep(TTL + 0.1)

    assert liveness.claim("w1") is True  # ... and this sweeper dies before recovering
    assert liveness.sweep(max_hard_kills=3, job_class=FleetJob) == []  # claim still fresh

    time.sleep(TTL + 0.1)
    recovered = liveness.sweep(max_hard_kills=3, job_class=FleetJob)

    assert [(r.worker, r.job_id, r.outcome) for r in recovered] == [
        ("w1", job.id, Outcome.REQUEUED)
    ]
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED
    assert redis.zscore(liveness.heartbeats_key, "w1") is None


def test_the_beacon_beats_before_start_returns(redis: Redis, redis_url: str) -> None:
    beacon = Beacon(
        redis_url,
        "w1",
        ttl_s=TTL,
        interval_s=60,  # the thread would not beat again during this test
        sweep_interval_s=60,
        max_hard_kills=3,
        instance="i-0abc",
    )
    beacon.start()
    try:
        assert redis.zscore(beacon.liveness.heartbeats_key, "w1") is not None
        assert redis.hget(beacon.liveness.instances_key, "w1") == b"i-0abc"
    finally:
        beacon.stop()
        beacon.join(timeout=5)
        beacon.connection.close()
