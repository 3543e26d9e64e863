"""`scale` / `release` through the in-memory provider and a real Redis (holds)."""

from __future__ import annotations

import pytest
from redis import Redis

from fleetkit.autoscaler.errors import CapacityUnavailable
from fleetkit.autoscaler.holds import HoldStore
from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider
from fleetkit.autoscaler.manual import plan_scale, release, scale
from fleetkit.autoscaler.model import Capacity, Hold
from fleetkit.core.errors import UsageError
from tests.autoscaler.test_daemon import environment


def fleet(spot_max: int = 20, od_max: int = 8) -> InMemoryCapacityProvider:
    return InMemoryCapacityProvider({"workers": (spot_max, od_max)})


def test_scale_up_is_one_call_per_group_and_records_the_hold(redis: Redis) -> None:
    provider = fleet(spot_max=15)
    holds = HoldStore(redis, "test", clock=lambda: 1_000.0)
    result = scale(
        environment(),
        "workers",
        20,
        hold_s=1800,
        provider=provider,
        holds=holds,
        busy=lambda: frozenset(),
    )
    assert provider.calls == [
        ("set_desired", "workers-spot", 15),
        ("set_desired", "workers-on-demand", 5),
    ]
    assert holds.get("workers") == result.hold
    assert result.hold is not None and (result.hold.count, result.hold.until) == (20, 2_800.0)


def test_scale_down_removes_idle_instances_only(redis: Redis) -> None:
    provider = fleet()
    provider.set_desired(provider.read()["workers"].spot, 4)
    ids = sorted(i.id for i in provider.read()["workers"].spot.instances)
    result = scale(
        environment(),
        "workers",
        1,
        hold_s=0,
        provider=provider,
        holds=HoldStore(redis, "test"),
        busy=lambda: frozenset(ids[:2]),
    )
    assert sorted(provider.terminated) == ids[2:]
    assert result.plan.busy_left == 1
    assert result.hold is None


BAD = [
    ("unknown-pool", "nope", 5, "pool 'nope'"),
    ("negative", "workers", -1, "N -1"),
    ("above-max", "workers", 21, "N 21: above pool 'workers' max_size 20"),
]


@pytest.mark.parametrize(
    ("pool", "count", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_input_changes_nothing(redis: Redis, pool: str, count: int, message: str) -> None:
    provider = fleet()
    holds = HoldStore(redis, "test")
    with pytest.raises(UsageError, match=message):
        scale(
            environment(),
            pool,
            count,
            hold_s=1800,
            provider=provider,
            holds=holds,
            busy=lambda: frozenset(),
        )
    assert provider.calls == []
    assert holds.get("workers") is None


def test_beyond_both_groups_is_refused() -> None:
    provider = fleet(spot_max=10, od_max=3)
    with pytest.raises(UsageError, match="spot group's max 10 plus the on-demand group's max 3"):
        plan_scale("workers", 14, provider.read()["workers"])


def test_a_failed_change_puts_the_previous_hold_back(redis: Redis) -> None:
    provider = fleet()
    provider.fail_reads = False
    holds = HoldStore(redis, "test")
    holds.set("workers", 3, 600)

    def broken(group: object, desired: int) -> None:
        raise CapacityUnavailable("set_desired_capacity: Throttling")

    provider.set_desired = broken  # type: ignore[method-assign]
    with pytest.raises(CapacityUnavailable):
        scale(
            environment(),
            "workers",
            10,
            hold_s=1800,
            provider=provider,
            holds=holds,
            busy=lambda: frozenset(),
        )
    hold = holds.get("workers")
    assert hold is not None and hold.count == 3


def test_release_ends_the_hold(redis: Redis) -> None:
    holds = HoldStore(redis, "test")
    holds.set("workers", 5, 600)
    assert release(environment(), "workers", holds) is True
    assert release(environment(), "workers", holds) is False
    with pytest.raises(UsageError):
        release(environment(), "nope", holds)


def test_plan_lowers_only_unlaunched_requests() -> None:
    provider = fleet()
    groups = provider.read()["workers"]
    plan = plan_scale("workers", 0, groups)
    assert plan.desired == {} and plan.terminate == ()
    provider.set_desired(groups.spot, 2)
    plan = plan_scale("workers", 5, provider.read()["workers"])
    assert plan.desired == {Capacity.SPOT: 5}


def test_scaling_with_spot_short_keeps_the_busy_on_demand_stand_ins(redis: Redis) -> None:
    provider = InMemoryCapacityProvider({"workers": (20, 8)}, spot_available=0)
    groups = provider.read()["workers"]
    provider.set_desired(groups.spot, 5)  # spot cannot deliver any
    provider.set_desired(groups.on_demand, 5)  # the fallback runs the work
    od_ids = sorted(i.id for i in provider.read()["workers"].on_demand.instances)
    provider.calls.clear()

    def scale_to(n: int, busy: frozenset[str]) -> None:
        scale(
            environment(),
            "workers",
            n,
            hold_s=600,
            provider=provider,
            holds=HoldStore(redis, "test"),
            busy=lambda: busy,
        )

    scale_to(5, frozenset(od_ids))
    assert provider.calls == [] and provider.terminated == []
    scale_to(4, frozenset(od_ids[:4]))  # one idle stand-in may go
    assert provider.terminated == [od_ids[4]]


def test_a_failed_change_puts_an_open_ended_hold_back_as_it_was(redis: Redis) -> None:
    holds = HoldStore(redis, "test")
    redis.set("fleetkit:test:hold:workers", '{"count": 7, "until": null}')
    provider = fleet()

    def broken(group: object, desired: int) -> None:
        raise CapacityUnavailable("set_desired_capacity: Throttling")

    provider.set_desired = broken  # type: ignore[method-assign]
    with pytest.raises(CapacityUnavailable):
        scale(
            environment(),
            "workers",
            10,
            hold_s=1800,
            provider=provider,
            holds=holds,
            busy=lambda: frozenset(),
        )
    assert holds.get("workers") == Hold(7, None)
    assert redis.pttl("fleetkit:test:hold:workers") == -1
