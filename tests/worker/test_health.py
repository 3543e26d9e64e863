"""Worker health: the verdict table, the sliding window in Redis, and the instance roll-up."""

from __future__ import annotations

import itertools

import pytest
from redis import Redis

from fleetkit.core.schema import RedisSchema
from fleetkit.worker import health as health_module
from fleetkit.worker.health import HealthPolicy, WorkerHealth, instance_digest, judge

POLICY = HealthPolicy(
    window_s=60, max_error_rate=0.5, min_jobs_for_rate=10, max_consecutive_failures=5
)
T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("jobs", "failures", "consecutive", "healthy", "reason_words"),
    [
        (0, 0, 0, True, []),
        (100, 0, 0, True, []),
        (4, 4, 4, True, []),
        (5, 5, 5, False, ["consecutive"]),
        (9, 9, 4, True, []),
        (10, 5, 1, True, []),
        (10, 6, 1, False, ["error rate"]),
        (20, 20, 20, False, ["consecutive", "error rate"]),
        (100, 49, 5, False, ["consecutive"]),
    ],
    ids=[
        "idle",
        "all-ok",
        "few-failures-below-both-limits",
        "consecutive-at-limit",
        "rate-high-but-too-few-jobs",
        "rate-exactly-at-limit",
        "rate-over-limit",
        "both",
        "consecutive-only",
    ],
)
def test_judge(
    jobs: int, failures: int, consecutive: int, healthy: bool, reason_words: list[str]
) -> None:
    verdict, reasons = judge(jobs, failures, consecutive, POLICY)
    assert verdict is healthy
    assert len(reasons) == len(reason_words)
    for reason, word in zip(reasons, reason_words, strict=True):
        assert word in reason


def test_window_slides(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    health = WorkerHealth(redis, "i-0abc.1", POLICY)
    for i in range(4):
        health.record_job(ok=False, now=T0 + i)
    health.record_job(ok=True, now=T0 + 4)

    inside = health.digest(now=T0 + 30)
    assert (inside["jobs_in_window"], inside["failures_in_window"]) == (5, 4)
    assert inside["error_rate"] == pytest.approx(0.8)

    # Read later: the same events have left the window without any write.
    later = health.digest(now=T0 + 63.5)
    assert (later["jobs_in_window"], later["failures_in_window"]) == (1, 0)
    # The window is (now - window_s, now]: an event exactly window_s old is out.
    assert health.digest(now=T0 + 64)["jobs_in_window"] == 0

    # Writes well after the window trim the old events (on a random one in ten), so the sets
    # stay bounded however long the worker runs. The draw is made deterministic here: nine
    # writes that do not trim, then one that does.
    draws = itertools.cycle([0.5] * 9 + [0.05])
    monkeypatch.setattr(health_module.random, "random", lambda: next(draws))
    for i in range(9):
        health.record_job(ok=True, now=T0 + 100 + i)
    assert redis.zcard(health.keys.failures) == 4  # not trimmed yet
    health.record_job(ok=True, now=T0 + 200)  # the tenth: trims what is older than its window
    assert redis.zcard(health.keys.failures) == 0
    assert redis.zcard(health.keys.jobs) == 1


def test_sets_stay_bounded_over_many_windows(redis: Redis) -> None:
    health = WorkerHealth(redis, "i-0abc.2", POLICY)
    for i in range(3000):  # 50 windows of 60 jobs
        health.record_job(ok=i % 2 == 0, now=T0 + i)
    # At most one window (60 s at 1 job/s) plus what accumulates between trims.
    assert redis.zcard(health.keys.jobs) < 60 + 100
    assert health.digest(now=T0 + 2999)["jobs_in_window"] == 60


def test_error_rate_over_enough_jobs_makes_worker_unhealthy(redis: Redis) -> None:
    health = WorkerHealth(redis, "i-0abc.1", POLICY)
    # Alternate so the consecutive rule never fires: only the rate can.
    for i in range(12):
        health.record_job(ok=i % 3 == 0, now=T0 + i)
    digest = health.digest(now=T0 + 12)
    assert digest["jobs_in_window"] == 12
    assert digest["failures_in_window"] == 8
    assert digest["error_rate"] == pytest.approx(8 / 12)
    assert digest["consecutive_failures"] == 2
    assert digest["healthy"] is False
    assert len(digest["reasons"]) == 1
    assert "error rate" in digest["reasons"][0]


def test_same_instant_jobs_count_separately(redis: Redis) -> None:
    health = WorkerHealth(redis, "i-0abc.1", POLICY)
    for _ in range(3):
        health.record_job(ok=False, now=T0)
    assert health.digest(now=T0)["failures_in_window"] == 3


def test_consecutive_failures_reset_on_success(redis: Redis) -> None:
    health = WorkerHealth(redis, "i-0abc.1", POLICY)
    for i in range(5):
        health.record_job(ok=False, now=T0 + i)
    failing = health.digest(now=T0 + 5)
    assert failing["consecutive_failures"] == 5
    assert failing["healthy"] is False
    assert "5 consecutive failures" in failing["reasons"][0]

    health.record_job(ok=True, now=T0 + 6)
    recovered = health.digest(now=T0 + 6)
    assert recovered["consecutive_failures"] == 0
    # 5 failures in 6 jobs, but too few jobs for the rate to count.
    assert recovered["healthy"] is True
    assert recovered["reasons"] == []


@pytest.mark.parametrize("ok", [True, False], ids=["success", "failure"])
def test_keys_expire(redis: Redis, ok: bool) -> None:
    health = WorkerHealth(redis, "i-0abc.1", POLICY)
    health.record_job(ok=False)
    health.record_job(ok=ok)
    health.set_at_risk("spot interruption notice")
    for key in health.keys.all():
        ttl = redis.ttl(key)
        assert 0 < ttl <= 2 * POLICY.window_s, key


def test_at_risk_is_reported_without_failing_health(redis: Redis) -> None:
    health = WorkerHealth(redis, "i-0abc.1", POLICY)
    assert health.digest()["at_risk"] is False
    health.set_at_risk("rebalance recommendation")
    digest = health.digest()
    assert digest["at_risk"] is True
    assert digest["at_risk_reason"] == "rebalance recommendation"
    assert digest["healthy"] is True


def test_clear_removes_every_key(redis: Redis) -> None:
    health = WorkerHealth(redis, "i-0abc.1", POLICY)
    health.record_job(ok=False)
    health.set_at_risk("spot")
    other = WorkerHealth(redis, "i-0abc.2", POLICY)
    other.record_job(ok=True)

    health.clear()
    assert redis.exists(*health.keys.all()) == 0
    assert redis.exists(other.keys.jobs) == 1


def test_decoded_client_reads_the_same(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        health = WorkerHealth(client, "i-0abc.1", POLICY)
        health.record_job(ok=False, now=T0)
        health.set_at_risk("spot")
        digest = health.digest(now=T0)
        assert digest["failures_in_window"] == 1
        assert digest["at_risk"] is True
    finally:
        client.close()


@pytest.mark.parametrize(
    ("failing_workers", "workers", "healthy"),
    [
        ([], ["i-0abc.1", "i-0abc.2"], True),
        (["i-0abc.2"], ["i-0abc.1", "i-0abc.2"], False),
        ([], [], False),
        ([], ["i-0abc.never-recorded"], True),
    ],
    ids=["all-healthy", "one-failing", "no-workers", "idle-worker"],
)
def test_instance_digest(
    redis: Redis, failing_workers: list[str], workers: list[str], healthy: bool
) -> None:
    for worker in workers:
        health = WorkerHealth(redis, worker, POLICY, keys=RedisSchema("fk"))
        if worker.endswith("never-recorded"):
            continue
        for i in range(6):
            health.record_job(ok=worker not in failing_workers, now=T0 + i)

    digest = instance_digest(redis, workers, POLICY, keys=RedisSchema("fk"), now=T0 + 10)

    assert digest["healthy"] is healthy
    assert [w["worker"] for w in digest["workers"]] == workers
    assert [w["worker"] for w in digest["workers"] if not w["healthy"]] == failing_workers
    if healthy:
        assert digest["reasons"] == []
    else:
        assert digest["reasons"]
    for worker in failing_workers:
        assert any(r.startswith(f"{worker}: ") for r in digest["reasons"])
