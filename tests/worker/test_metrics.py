"""Metrics: several workers add to Redis, one render gives valid, consistent Prometheus text."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis import Redis

from fleetkit.core.schema import KEYS, RedisSchema
from fleetkit.worker.metrics import (
    DURATION_BUCKETS,
    PICKUP_BUCKETS,
    WorkerMetrics,
    WorkerMetricsCollector,
)

A, B = "i-0abc.1", "i-0abc.2"


def render_prometheus(
    redis: Redis,
    workers: list[str],
    keys: RedisSchema = KEYS,
    extra_gauges: dict[str, float] | None = None,
) -> bytes:
    """What `/metrics` answers for these workers: the collector, rendered as Prometheus text."""
    collector = WorkerMetricsCollector(redis, lambda: workers, lambda: extra_gauges or {}, keys)
    return generate_latest(collector.registry())


def samples(text: bytes) -> list[Sample]:
    return [s for f in text_string_to_metric_families(text.decode()) for s in f.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    matches = [s.value for s in found if s.name == name and s.labels == labels]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def buckets(found: list[Sample], name: str, worker: str) -> list[tuple[float, float]]:
    pairs = [
        (float(s.labels["le"]), s.value)
        for s in found
        if s.name == f"{name}_bucket" and s.labels["worker"] == worker
    ]
    return sorted(pairs)


@pytest.fixture
def rendered(redis: Redis) -> list[Sample]:
    a = WorkerMetrics(redis, A)
    b = WorkerMetrics(redis, B)
    for latency, duration in [(0.002, 0.004), (0.02, 0.3), (None, 7.0), (-0.5, 0.005)]:
        a.job_started(latency)
        a.job_finished(duration)
    a.job_started(0.3)
    a.job_failed(900.0)
    a.notice_seen("spot")
    a.job_handed_back()
    b.job_started(6.0)
    b.job_failed(1.0)
    b.notice_seen("spot")
    b.notice_seen("rebalance")
    b.notice_seen("spot")
    b.jobs_recovered(3)
    b.jobs_recovered(0)
    text = render_prometheus(redis, [A, B], extra_gauges={"at_risk": 1, "draining": 0})
    return samples(text)


@pytest.mark.parametrize(
    ("name", "worker", "expected"),
    [
        ("fleetkit_jobs_started_total", A, 5),
        ("fleetkit_jobs_finished_total", A, 4),
        ("fleetkit_jobs_failed_total", A, 1),
        ("fleetkit_jobs_handed_back_total", A, 1),
        ("fleetkit_jobs_recovered_total", A, 0),
        ("fleetkit_jobs_started_total", B, 1),
        ("fleetkit_jobs_finished_total", B, 0),
        ("fleetkit_jobs_failed_total", B, 1),
        ("fleetkit_jobs_handed_back_total", B, 0),
        ("fleetkit_jobs_recovered_total", B, 3),
        ("fleetkit_job_duration_seconds_count", A, 5),
        ("fleetkit_job_duration_seconds_count", B, 1),
        ("fleetkit_job_pickup_latency_seconds_count", A, 4),
        ("fleetkit_job_pickup_latency_seconds_count", B, 1),
    ],
)
def test_counts_per_worker(rendered: list[Sample], name: str, worker: str, expected: int) -> None:
    assert value(rendered, name, worker=worker) == expected


def test_notices_by_kind(rendered: list[Sample]) -> None:
    name = "fleetkit_termination_notices_total"
    assert value(rendered, name, worker=A, kind="spot") == 1
    assert value(rendered, name, worker=B, kind="spot") == 2
    assert value(rendered, name, worker=B, kind="rebalance") == 1
    assert not [s for s in rendered if s.name == name and s.labels == {"worker": A, "kind": "x"}]


def test_extra_gauges(rendered: list[Sample]) -> None:
    assert value(rendered, "fleetkit_at_risk") == 1
    assert value(rendered, "fleetkit_draining") == 0


@pytest.mark.parametrize(
    ("name", "bounds"),
    [
        ("fleetkit_job_duration_seconds", DURATION_BUCKETS),
        ("fleetkit_job_pickup_latency_seconds", PICKUP_BUCKETS),
    ],
    ids=["duration", "pickup"],
)
@pytest.mark.parametrize("worker", [A, B])
def test_histograms_cumulative_and_consistent(
    rendered: list[Sample], name: str, bounds: tuple[float, ...], worker: str
) -> None:
    pairs = buckets(rendered, name, worker)
    assert [le for le, _ in pairs] == list(bounds)
    counts = [c for _, c in pairs]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert math.isinf(pairs[-1][0])
    assert counts[-1] == value(rendered, f"{name}_count", worker=worker)


def test_observations_land_in_the_right_buckets(rendered: list[Sample]) -> None:
    duration = dict(buckets(rendered, "fleetkit_job_duration_seconds", A))
    # 0.004 and 0.005 (a bound is inclusive), 0.3, 7.0, and 900 only in +Inf.
    assert duration[0.005] == 2
    assert duration[0.25] == 2
    assert duration[0.5] == 3
    assert duration[10] == 4
    assert duration[600] == 4
    assert duration[math.inf] == 5
    assert value(rendered, "fleetkit_job_duration_seconds_sum", worker=A) == pytest.approx(
        0.004 + 0.3 + 7.0 + 0.005 + 900.0
    )
    pickup = dict(buckets(rendered, "fleetkit_job_pickup_latency_seconds", A))
    # The negative latency (clock skew) counts as immediate.
    assert pickup[0.001] == 1
    assert pickup[0.0025] == 2
    assert pickup[0.025] == 3
    assert pickup[0.5] == 4
    assert value(rendered, "fleetkit_job_pickup_latency_seconds_sum", worker=A) == pytest.approx(
        0.002 + 0.02 + 0.3
    )


def test_unknown_worker_renders_zeros(redis: Redis) -> None:
    found = samples(render_prometheus(redis, ["i-0abc.9"]))
    assert value(found, "fleetkit_jobs_started_total", worker="i-0abc.9") == 0
    assert value(found, "fleetkit_job_duration_seconds_count", worker="i-0abc.9") == 0
    assert not [s for s in found if s.name.startswith("fleetkit_termination_notices")]


def test_no_workers_still_renders(redis: Redis) -> None:
    found = samples(render_prometheus(redis, [], extra_gauges={"draining": 1}))
    assert value(found, "fleetkit_draining") == 1


def test_hash_expires_and_sits_under_prefix(redis: Redis) -> None:
    metrics = WorkerMetrics(redis, A, keys=RedisSchema("fk"), ttl_s=120)
    metrics.job_started(0.01)
    assert 0 < redis.ttl(f"fk:metrics:{A}") <= 120
    found = samples(render_prometheus(redis, [A], keys=RedisSchema("fk")))
    assert value(found, "fleetkit_jobs_started_total", worker=A) == 1
