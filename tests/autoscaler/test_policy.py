"""The scaling policy: tables of cases (properties: test_policy_properties). Pure: no I/O."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fleetkit.autoscaler.model import (
    Action,
    Capacity,
    Decision,
    GroupState,
    Hold,
    Instance,
    Lifecycle,
    Memory,
    PoolGroups,
    PoolLimits,
    PoolState,
    QueueLoad,
)
from fleetkit.autoscaler.policy import (
    QueueDrainPolicy,
    idle_victims,
    instances_needed,
    processes_needed,
)

NOW = 10_000.0
WINDOW = 300.0
LIMITS = PoolLimits(
    min_size=0,
    max_size=50,
    processes_per_instance=2,
    target_drain_s=300,
    default_job_duration_s=60,
    stabilization_window_s=WINDOW,
    fallback_grace_s=90,
)
WATCHED = Memory(recommendations=((NOW - WINDOW - 10, 0),))  # a full window of zero need
FRESH = Memory()


def group(
    capacity: Capacity,
    *,
    desired: int = 0,
    in_service: int = 0,
    pending: int = 0,
    max_size: int = 50,
    min_size: int = 0,
    failure: str | None = None,
) -> GroupState:
    prefix = "i-s" if capacity is Capacity.SPOT else "i-o"
    instances = [Instance(f"{prefix}{n:02d}", Lifecycle.IN_SERVICE) for n in range(in_service)]
    instances += [
        Instance(f"{prefix}{n:02d}", Lifecycle.PENDING)
        for n in range(in_service, in_service + pending)
    ]
    return GroupState(
        name=f"pool-{capacity.value}",
        capacity=capacity,
        desired=desired,
        min_size=min_size,
        max_size=max_size,
        instances=tuple(instances),
        capacity_failure=failure,
    )


def state(
    *,
    queued: int = 0,
    in_flight: int = 0,
    rate: float | None = None,
    duration: float | None = None,
    spot: GroupState | None = None,
    on_demand: GroupState | None = None,
    busy: frozenset[str] = frozenset(),
    hold: Hold | None = None,
    limits: PoolLimits = LIMITS,
) -> PoolState:
    return PoolState(
        pool="workers",
        now=NOW,
        limits=limits,
        load=QueueLoad(queued, in_flight, arrival_rate=rate, mean_duration_s=duration),
        groups=PoolGroups(
            spot=spot or group(Capacity.SPOT), on_demand=on_demand or group(Capacity.ON_DEMAND)
        ),
        busy_instances=busy,
        hold=hold,
    )


def decide(pool_state: PoolState, memory: Memory = FRESH) -> Decision:
    return QueueDrainPolicy().decide(pool_state, memory)


SIZING = [
    # (id, queued, in_flight, rate, duration, expected instances)
    ("burst-drains-in-T", 100, 0, None, None, 10),  # 100 * 60 s ÷ 300 s = 20 processes
    ("little-law", 0, 0, 1.0, 10.0, 5),  # 1 job/s * 10 s = 10 processes
    ("in-flight-floor", 0, 6, 0.1, 10.0, 3),  # rate says 1, six are running
    ("one-job-one-instance", 1, 0, None, 0.001, 1),
    ("empty", 0, 0, 0.0, 5.0, 0),
    ("clamped-to-max", 1_000_000, 0, None, None, 50),
]


@pytest.mark.parametrize(
    ("queued", "in_flight", "rate", "duration", "expected"),
    [c[1:] for c in SIZING],
    ids=[c[0] for c in SIZING],
)
def test_sizing(
    queued: int, in_flight: int, rate: float | None, duration: float | None, expected: int
) -> None:
    decision = decide(state(queued=queued, in_flight=in_flight, rate=rate, duration=duration))
    assert decision.target == expected
    if expected:
        assert decision.desired == {Capacity.SPOT: expected}
        assert decision.action is Action.SCALE_OUT
    else:
        assert not decision.changes


def test_processes_and_instances_are_littles_law_plus_drain() -> None:
    load = QueueLoad(queued=30, in_flight=2, arrival_rate=0.5, mean_duration_s=20.0)
    assert processes_needed(load, LIMITS) == pytest.approx(10 + 30 * 20 / 300)
    assert instances_needed(4.0000000001, LIMITS) == 2
    assert instances_needed(4.1, LIMITS) == 3


def test_launching_instances_count_as_capacity() -> None:
    decision = decide(state(queued=100, spot=group(Capacity.SPOT, desired=10, pending=10)))
    assert decision.action is Action.STEADY
    assert not decision.changes


def test_min_and_hold_are_floors() -> None:
    limits = replace(LIMITS, min_size=2)
    assert decide(state(limits=limits)).desired == {Capacity.SPOT: 2}
    held = decide(state(hold=Hold(count=5, until=NOW + 60)))
    assert held.desired == {Capacity.SPOT: 5}
    expired = decide(state(hold=Hold(count=5, until=NOW - 1)))
    assert not expired.changes


def test_scale_in_waits_for_the_window() -> None:
    spot = group(Capacity.SPOT, desired=4, in_service=4)
    decision = decide(state(spot=spot))
    assert decision.action is Action.WAIT
    assert not decision.changes


def test_scale_in_removes_only_idle_instances() -> None:
    spot = group(Capacity.SPOT, desired=4, in_service=4)
    decision = decide(state(spot=spot, busy=frozenset({"i-s01"})), WATCHED)
    assert decision.action is Action.SCALE_IN
    assert decision.terminate == (
        (Capacity.SPOT, "i-s00"),
        (Capacity.SPOT, "i-s02"),
        (Capacity.SPOT, "i-s03"),
    )
    assert decision.desired == {}  # never lowered: the group would pick busy victims


def test_scale_in_keeps_the_highest_need_of_the_window() -> None:
    spot = group(Capacity.SPOT, desired=6, in_service=6)
    memory = Memory(recommendations=((NOW - WINDOW - 10, 0), (NOW - 100, 4)))
    decision = decide(state(spot=spot), memory)
    assert len(decision.terminate) == 2


def test_no_scale_in_while_the_backlog_exceeds_capacity() -> None:
    spot = group(Capacity.SPOT, desired=4, in_service=4)
    decision = decide(state(queued=9, duration=1.0, spot=spot), WATCHED)
    assert decision.target == 1
    assert decision.terminate == ()


def test_scale_in_stops_at_the_groups_minimum() -> None:
    limits = replace(LIMITS, min_size=0)
    spot = group(Capacity.SPOT, desired=4, in_service=4, min_size=3)
    decision = decide(state(spot=spot, limits=limits), WATCHED)
    assert len(decision.terminate) == 1


def test_desired_is_never_lowered_over_running_instances() -> None:
    spot = group(Capacity.SPOT, desired=10, in_service=3)  # 7 requests spot never filled
    decision = decide(state(in_flight=6, spot=spot), WATCHED)
    assert decision.desired == {}
    assert decision.terminate == ()


def test_unlaunched_requests_of_an_empty_group_are_cancelled_after_the_window() -> None:
    spot = group(Capacity.SPOT, desired=6, in_service=0)
    assert decide(state(spot=spot), FRESH).desired == {}
    decision = decide(state(spot=spot), WATCHED)
    assert decision.desired == {Capacity.SPOT: 0}
    assert decision.action is Action.SCALE_IN
    assert "never launched" in decision.reason


FALLBACK = [
    # (id, short for seconds, failure message, expected on-demand desired)
    ("within-grace", 30, None, None),
    ("after-grace", 100, None, 6),
    ("capacity-failure-skips-grace", 10, "InsufficientInstanceCapacity", 6),
    ("capacity-failure-first-sight", 0, "InsufficientInstanceCapacity", None),
]


@pytest.mark.parametrize(
    ("short_for", "failure", "expected"),
    [c[1:] for c in FALLBACK],
    ids=[c[0] for c in FALLBACK],
)
def test_spot_shortfall_falls_back_to_on_demand(
    short_for: float, failure: str | None, expected: int | None
) -> None:
    spot = group(Capacity.SPOT, desired=10, in_service=4, failure=failure)
    memory = Memory(spot_short_since=NOW - short_for)
    decision = decide(state(queued=80, in_flight=4, spot=spot), memory)  # 10 instances
    assert decision.desired.get(Capacity.ON_DEMAND) == expected
    assert Capacity.SPOT not in decision.desired  # spot keeps asking
    if expected:
        assert decision.action is Action.FALLBACK
        assert "on-demand desired 0 → 6" in decision.reason


def test_fallback_is_bounded_by_the_on_demand_max() -> None:
    spot = group(Capacity.SPOT, desired=10, in_service=0)
    on_demand = group(Capacity.ON_DEMAND, max_size=3)
    decision = decide(
        state(queued=100, spot=spot, on_demand=on_demand), Memory(spot_short_since=NOW - 200)
    )
    assert decision.desired == {Capacity.ON_DEMAND: 3}


def test_shortfall_is_remembered_then_forgotten() -> None:
    short = decide(state(queued=100, spot=group(Capacity.SPOT, desired=10, in_service=4)))
    assert short.memory.spot_short_since == NOW
    full = decide(state(queued=100, spot=group(Capacity.SPOT, desired=10, in_service=10)))
    assert full.memory.spot_short_since is None


def test_spot_caught_up_replaces_idle_on_demand_first() -> None:
    spot = group(Capacity.SPOT, desired=10, in_service=10)
    on_demand = group(Capacity.ON_DEMAND, desired=3, in_service=3)
    decision = decide(
        state(queued=20, in_flight=16, spot=spot, on_demand=on_demand, busy=frozenset({"i-o01"})),
        FRESH,
    )  # 16 + 20 * 60 ÷ 300 = 20 processes: 10 instances, all on spot now
    assert decision.action is Action.REPLACE
    assert decision.terminate == ((Capacity.ON_DEMAND, "i-o00"), (Capacity.ON_DEMAND, "i-o02"))


def test_beyond_the_spot_max_goes_on_demand() -> None:
    spot = group(Capacity.SPOT, desired=0, max_size=5)
    decision = decide(state(queued=80, spot=spot))  # 16 processes: 8 instances
    assert decision.desired == {Capacity.SPOT: 5, Capacity.ON_DEMAND: 3}


@pytest.mark.parametrize("missing", ["load", "groups"])
def test_missing_data_keeps_capacity(missing: str) -> None:
    spot = group(Capacity.SPOT, desired=4, in_service=4)
    pool_state = replace(state(spot=spot), **{missing: None})
    decision = decide(pool_state, WATCHED)
    assert decision.action is Action.KEEP
    assert not decision.changes
    assert "unreadable" in decision.reason
    assert decision.memory.recommendations == ()  # the window starts over


# --- idle_victims: the one choice of instances to remove (the daemon's and `scale`'s) ---------

S, OD = Capacity.SPOT, Capacity.ON_DEMAND
VICTIMS: list[tuple[str, dict[str, object], int, list[tuple[Capacity, str]]]] = [
    # (id, changes to the defaults below, how many, what is chosen)
    ("on-demand-first-then-by-id", {}, 3, [(OD, "i-o00"), (OD, "i-o01"), (S, "i-s00")]),
    ("no-more-than-asked", {}, 1, [(OD, "i-o00")]),
    ("busy-never", {"busy": frozenset({"i-o00", "i-s00"})}, 2, [(OD, "i-o01"), (S, "i-s01")]),
    (
        "launching-never",
        {"spot_pending": 2, "spot_in_service": 0},
        4,
        [(OD, "i-o00"), (OD, "i-o01")],
    ),
    ("not-below-min", {"od_min": 1}, 2, [(OD, "i-o00"), (S, "i-s00")]),
    (
        "min-of-the-new-desired",
        {"desired": {S: 1}},
        4,
        [(OD, "i-o00"), (OD, "i-o01"), (S, "i-s00")],
    ),
    ("only-one-group", {"only": S}, 4, [(S, "i-s00"), (S, "i-s01")]),
    ("taken-use-up-room", {"taken": [(OD, "i-o00")], "od_min": 1}, 4, [(S, "i-s00"), (S, "i-s01")]),
    ("none-asked", {}, 0, []),
]


@pytest.mark.parametrize(
    ("changes", "count", "expected"), [c[1:] for c in VICTIMS], ids=[c[0] for c in VICTIMS]
)
def test_idle_victims(
    changes: dict[str, Any], count: int, expected: list[tuple[Capacity, str]]
) -> None:
    spot_in_service = changes.get("spot_in_service", 2)
    spot_pending = changes.get("spot_pending", 0)
    groups = PoolGroups(
        spot=group(
            S,
            desired=spot_in_service + spot_pending,
            in_service=spot_in_service,
            pending=spot_pending,
        ),
        on_demand=group(OD, desired=2, in_service=2, min_size=changes.get("od_min", 0)),
    )
    chosen = idle_victims(
        groups,
        changes.get("busy", frozenset()),
        count,
        desired=changes.get("desired"),
        only=changes.get("only"),
        taken=changes.get("taken", ()),
    )
    assert chosen == expected
