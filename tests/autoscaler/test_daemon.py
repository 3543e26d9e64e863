"""The daemon's tick through the seams' test implementations, with a real Redis for the lock,
the decision records and the round trips of a tick. Recovery is in test_recovery; AWS itself in
test_e2e (moto) and test_asg.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from fleetkit.autoscaler.daemon import Autoscaler
from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider, InMemoryQueueDepthSource
from fleetkit.autoscaler.leader import LeaderLock
from fleetkit.autoscaler.metrics import AutoscalerMetrics
from fleetkit.autoscaler.model import Action, GroupState, QueueLoad, QueueReading
from fleetkit.autoscaler.policy import QueueDrainPolicy
from fleetkit.autoscaler.rq_source import RqQueueDepthSource
from fleetkit.core.environment import Environment
from fleetkit.core.liveness import Liveness
from fleetkit.core.schema import KEYS
from tests.worker import jobs


def environment(**scaling: Any) -> Environment:
    return Environment.model_validate(
        {
            "name": "test",
            "region": "us-east-1",
            "pools": {
                "workers": {
                    "queues": ["default"],
                    "instance_types": ["t3.small"],
                    "ami": "ami-0123456789abcdef0",
                    "processes_per_instance": 2,
                    "max_size": 20,
                    "on_demand": {"max_size": 8},
                    "scaling": {"stabilization_window_s": 0, "fallback_grace_s": 90, **scaling},
                }
            },
        }
    )


def reading(queued: int = 0, in_flight: int = 0, **extra: Any) -> QueueReading:
    return QueueReading(loads={"workers": QueueLoad(queued, in_flight)}, **extra)


def daemon(
    redis: Redis,
    source: InMemoryQueueDepthSource,
    provider: InMemoryCapacityProvider,
    *,
    env: Environment | None = None,
    owner: str = "a",
    dry_run: bool = False,
    clock: Any = time.time,
    **kwargs: Any,
) -> Autoscaler:
    env = env or environment()
    return Autoscaler(
        env,
        connection=redis,
        source=source,
        provider=provider,
        policy=QueueDrainPolicy(),
        lock=LeaderLock(redis, env.name, ttl_s=30, owner=owner),
        metrics=AutoscalerMetrics(interval_s=10),
        dry_run=dry_run,
        clock=clock,
        **kwargs,
    )


def provider(**kwargs: Any) -> InMemoryCapacityProvider:
    return InMemoryCapacityProvider({"workers": (20, 8)}, **kwargs)


def test_a_burst_scales_out_in_one_tick_and_logs_why(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = provider()
    caplog.set_level(logging.INFO, logger="autoscaler.decision")
    report = daemon(redis, InMemoryQueueDepthSource(reading(queued=100)), fleet).tick()

    assert fleet.calls == [("set_desired", "workers-spot", 10)]  # 100 * 60 s / 300 s / 2
    assert report.decisions[0].action is Action.SCALE_OUT
    line = json.loads(caplog.records[-1].getMessage())
    assert line["pool"] == "workers" and line["action"] == "scale-out" and line["applied"]
    assert "spot desired 0 → 10" in line["reason"]
    record = json.loads(redis.get(KEYS.decision("test", "workers")) or "{}")
    assert record["decision"]["target"] == 10


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 10.0) -> None:
        self.now += seconds


def test_spot_capacity_failure_moves_the_shortfall_to_on_demand_then_back(redis: Redis) -> None:
    fleet = provider(spot_available=4)
    source = InMemoryQueueDepthSource(reading(queued=100))
    clock = Clock()
    scaler = daemon(redis, source, fleet, clock=clock)
    scaler.tick()  # spot asked for 10, gets 4 and reports a capacity failure
    clock.tick()
    assert scaler.tick().decisions[0].action is Action.STEADY  # shortfall first seen
    clock.tick()
    report = scaler.tick()
    assert report.decisions[0].action is Action.FALLBACK
    assert "spot capacity failure" in report.decisions[0].reason
    assert fleet.read()["workers"].on_demand.desired == 6

    fleet.spot_available = None  # spot capacity returns
    fleet.advance()
    source.reading = reading(queued=20, in_flight=16)  # still 10 instances' worth
    clock.tick()
    report = scaler.tick()
    groups = fleet.read()["workers"]
    assert report.decisions[0].action is Action.REPLACE
    assert (groups.spot.live, groups.on_demand.live) == (10, 0)


def test_a_silent_spot_shortfall_falls_back_after_the_grace(redis: Redis) -> None:
    fleet = provider(spot_available=4, report_failures=False)
    source = InMemoryQueueDepthSource(reading(queued=100))
    clock = Clock()
    scaler = daemon(redis, source, fleet, clock=clock)
    actions = []
    for _ in range(12):  # two minutes of ticks
        actions.append(scaler.tick().decisions[0].action)
        clock.tick()
    first_fallback = actions.index(Action.FALLBACK)
    # Short from the second tick on; 90 s later (ticks every 10 s) the shortfall moves.
    assert first_fallback == 1 + 9
    assert fleet.read()["workers"].on_demand.desired == 6


@pytest.mark.parametrize("outage", ["redis", "aws"])
def test_unreadable_data_keeps_capacity_and_shows_in_health(redis: Redis, outage: str) -> None:
    fleet = provider()
    source = InMemoryQueueDepthSource(reading(queued=100))
    scaler = daemon(redis, source, fleet)
    scaler.tick()
    source.reading = reading()  # the queue emptied: a sound tick would now scale in
    source.fail = outage == "redis"
    fleet.fail_reads = outage == "aws"
    fleet.calls.clear()

    report = scaler.tick()

    assert fleet.calls == []
    assert report.decisions[0].action is Action.KEEP
    health = scaler.metrics.health()
    assert health["healthy"] is False
    assert f"{outage} unreadable" in health["reasons"]
    metrics = scaler.metrics.render().decode()
    assert f'fleetkit_autoscaler_data_available{{source="{outage}"}} 0.0' in metrics


def test_of_two_daemons_exactly_one_acts(redis: Redis) -> None:
    first_fleet, second_fleet = provider(), provider()
    source = InMemoryQueueDepthSource(reading(queued=100))
    first = daemon(redis, source, first_fleet, owner="a")
    second = daemon(redis, source, second_fleet, owner="b")

    reports = [first.tick(), second.tick(), first.tick(), second.tick()]

    assert [r.leader for r in reports] == [True, False, True, False]
    assert len(first_fleet.calls) == 1 and second_fleet.calls == []
    first.lock.release()  # type: ignore[union-attr]
    assert second.tick().leader is True


def test_dry_run_decides_and_logs_but_changes_nothing(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = provider()
    fleet.set_desired(fleet.read()["workers"].spot, 2)
    fleet.calls.clear()
    before = fleet.read()["workers"]
    caplog.set_level(logging.INFO, logger="autoscaler.decision")

    daemon(redis, InMemoryQueueDepthSource(reading(queued=100)), fleet, dry_run=True).tick()

    logged = [r.getMessage() for r in caplog.records if r.name == "autoscaler.decision"]
    (line,) = [json.loads(m) for m in logged]
    assert line["dry_run"] is True and line["applied"] is False
    assert (line["action"], line["desired"]) == ("scale-out", {"spot": 10})
    assert fleet.calls == []
    assert fleet.read()["workers"] == before
    assert redis.get(KEYS.leader("test")) is None  # a dry run never blocks the real daemon
    assert redis.keys("fleetkit:test:*") == []  # no record, no stored group members


def test_a_new_leader_continues_the_stabilization_window(redis: Redis) -> None:
    env = environment(stabilization_window_s=300)
    fleet = provider()
    fleet.set_desired(fleet.read()["workers"].spot, 4)
    source = InMemoryQueueDepthSource(reading())
    clock = Clock()
    first = daemon(redis, source, fleet, env=env, owner="a", clock=clock)
    for _ in range(20):  # 200 s of the window watched by the first leader
        assert first.tick().decisions[0].action is Action.WAIT
        clock.tick()
    first.lock.release()  # type: ignore[union-attr]

    second = daemon(redis, source, fleet, env=env, owner="b", clock=clock)
    actions = []
    for _ in range(12):
        actions.append(second.tick().decisions[0].action)
        clock.tick()
    # It picks up the window where the first left it: 100 more seconds, not 300.
    assert actions.index(Action.SCALE_IN) == 10
    assert len(fleet.terminated) == 4


def test_a_stale_record_or_a_long_gap_restarts_the_window(redis: Redis) -> None:
    env = environment(stabilization_window_s=300)
    fleet = provider()
    fleet.set_desired(fleet.read()["workers"].spot, 4)
    source = InMemoryQueueDepthSource(reading())
    clock = Clock()
    first = daemon(redis, source, fleet, env=env, owner="a", clock=clock)
    for _ in range(30):  # 290 s watched: ten more seconds and it would scale in
        assert first.tick().decisions[0].action is Action.WAIT
        clock.tick()
    first.lock.release()  # type: ignore[union-attr]

    clock.tick(3600)  # an hour without a daemon
    second = daemon(redis, source, fleet, env=env, owner="b", clock=clock)
    for _ in range(30):
        assert second.tick().decisions[0].action is Action.WAIT
        clock.tick()
    clock.tick(3600)  # and then this daemon stalled for an hour
    assert second.tick().decisions[0].action is Action.WAIT
    assert fleet.terminated == []


class BlockingProvider(InMemoryCapacityProvider):
    """Blocks inside `set_desired` until released: a tick caught in the middle of a change."""

    def __init__(self) -> None:
        super().__init__({"workers": (20, 8)})
        self.entered = threading.Event()
        self.release = threading.Event()

    def set_desired(self, group: GroupState, desired: int) -> None:
        self.entered.set()
        self.release.wait()
        super().set_desired(group, desired)


def test_sigterm_mid_tick_finishes_the_tick_then_stops_and_releases_the_lock(
    redis: Redis,
) -> None:
    fleet = BlockingProvider()
    scaler = daemon(redis, InMemoryQueueDepthSource(reading(queued=100)), fleet)
    runner = threading.Thread(target=scaler.run, args=(3600,))  # no second tick in this test
    runner.start()
    try:
        assert fleet.entered.wait(timeout=30), "the tick never reached set_desired"
        scaler.stop()  # what the SIGTERM handler does, while the change is in flight
        assert redis.get(KEYS.decision("test", "workers")) is None  # the tick is not over yet
    finally:
        fleet.release.set()
        runner.join(timeout=30)

    assert not runner.is_alive()
    assert fleet.calls == [("set_desired", "workers-spot", 10)]
    record = json.loads(redis.get(KEYS.decision("test", "workers")) or "{}")
    assert record["decision"]["action"] == "scale-out" and record["applied"] is True
    assert redis.get(KEYS.leader("test")) is None


def tick_round_trips(redis: Redis, round_trips: Callable[[], int], workers: int) -> int:
    """Round trips of one leader tick (after warm-up) with `workers` live workers on record."""
    redis.flushall()
    fleet = provider()
    fleet.set_desired(fleet.read()["workers"].spot, 10)
    instances = [i.id for i in fleet.read()["workers"].spot.instances]
    liveness = Liveness(redis, ttl_s=10)
    for n in range(workers):
        liveness.beat(f"w{n}", instances[n % len(instances)])
        if n % 2:
            redis.hset(f"rq:worker:w{n}", "current_job", f"job-{n}")
    for _ in range(5):
        Queue("default", connection=redis).enqueue(jobs.slow, 1)
    source = RqQueueDepthSource(redis, env="test")
    scaler = daemon(redis, source, fleet)
    for _ in range(2):  # warm-up: the lock, the scripts, the stored memory
        scaler.tick()
    before = round_trips()
    report = scaler.tick()
    assert report.leader and not report.errors, report.errors
    return round_trips() - before


def test_a_tick_costs_the_same_round_trips_whatever_the_fleet(
    redis: Redis, round_trips: Callable[[], int]
) -> None:
    # Lock, read, decision records with the group members, dead-worker check: none per worker.
    assert tick_round_trips(redis, round_trips, 4) == 4
    assert tick_round_trips(redis, round_trips, 400) == 4
