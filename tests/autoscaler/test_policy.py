"""The scaling policy: tables of cases and properties (hypothesis). Pure: no Redis, no AWS."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.fakes import InMemoryCapacityProvider
from autoscaler.model import (
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
from autoscaler.policy import QueueDrainPolicy, instances_needed, processes_needed

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


# --- properties ------------------------------------------------------------------------------


@st.composite
def groups_strategy(draw: st.DrawFn, capacity: Capacity) -> GroupState:
    max_size = draw(st.integers(0, 12))
    min_size = draw(st.integers(0, max_size))
    desired = draw(st.integers(min_size, max_size))
    count = draw(st.integers(0, max_size))
    lifecycles = draw(st.lists(st.sampled_from(list(Lifecycle)), min_size=count, max_size=count))
    prefix = "i-s" if capacity is Capacity.SPOT else "i-o"
    return GroupState(
        name=capacity.value,
        capacity=capacity,
        desired=desired,
        min_size=min_size,
        max_size=max_size,
        instances=tuple(Instance(f"{prefix}{n}", lc) for n, lc in enumerate(lifecycles)),
        capacity_failure=draw(st.none() | st.just("InsufficientInstanceCapacity")),
    )


@st.composite
def states(draw: st.DrawFn) -> tuple[PoolState, Memory]:
    spot = draw(groups_strategy(Capacity.SPOT))
    on_demand = draw(groups_strategy(Capacity.ON_DEMAND))
    max_size = draw(st.integers(0, 24))
    limits = replace(
        LIMITS,
        min_size=draw(st.integers(0, max_size)),
        max_size=max_size,
        processes_per_instance=draw(st.integers(1, 4)),
        stabilization_window_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
    )
    ids = [i.id for g in (spot, on_demand) for i in g.instances]
    busy = frozenset(draw(st.lists(st.sampled_from(ids))) if ids else [])
    hold = draw(
        st.none()
        | st.builds(
            Hold,
            count=st.integers(0, max_size),
            until=st.none() | st.floats(NOW - 100, NOW + 100),
        )
    )
    # Mostly light load, so that scale-in cases are common.
    load = QueueLoad(
        queued=draw(st.just(0) | st.integers(0, 500)),
        in_flight=draw(st.just(0) | st.integers(0, 50)),
        arrival_rate=draw(st.none() | st.floats(0, 50)),
        mean_duration_s=draw(st.none() | st.floats(0.001, 600)),
    )
    history = draw(st.lists(st.tuples(st.floats(NOW - 600, NOW - 1), st.integers(0, 4))))
    memory = Memory(
        recommendations=tuple(sorted(history)),
        spot_short_since=draw(st.none() | st.floats(NOW - 300, NOW)),
    )
    pool_state = PoolState(
        pool="p",
        now=NOW,
        limits=limits,
        load=load,
        groups=PoolGroups(spot, on_demand),
        busy_instances=busy,
        hold=hold,
    )
    return pool_state, memory


@settings(max_examples=400, deadline=None)
@given(states())
def test_properties(case: tuple[PoolState, Memory]) -> None:
    pool_state, memory = case
    decision = decide(pool_state, memory)
    groups, load, limits = pool_state.groups, pool_state.load, pool_state.limits
    assert groups is not None and load is not None
    hold = pool_state.hold
    floor = limits.min_size
    if hold is not None and hold.active(NOW):
        floor = max(floor, hold.count)
    floor = min(floor, limits.max_size)

    # Bounds: the pool's [min, max], never below a hold, each group within its own limits.
    assert decision.target is not None
    assert floor <= decision.target <= limits.max_size
    for capacity, value in decision.desired.items():
        g = groups.group(capacity)
        assert g.min_size <= value <= g.max_size

    # Scale-in candidates: only idle, in-service instances of this pool, each once.
    in_service = {
        i.id
        for g in (groups.spot, groups.on_demand)
        for i in g.instances
        if i.lifecycle is Lifecycle.IN_SERVICE
    }
    removed = [i for _, i in decision.terminate]
    assert len(set(removed)) == len(removed)
    assert set(removed) <= in_service - pool_state.busy_instances

    live = groups.spot.live + groups.on_demand.live
    if removed:
        # Never while the backlog exceeds capacity, never below the floor or a group's min.
        assert load.queued <= live * limits.processes_per_instance
        assert live - len(removed) >= floor
        for g in (groups.spot, groups.on_demand):
            gone = sum(1 for c, _ in decision.terminate if c is g.capacity)
            assert decision.desired.get(g.capacity, g.desired) - gone >= g.min_size
    # Desired is lowered only for a group with nothing in service: nothing running dies by it.
    for capacity, value in decision.desired.items():
        g = groups.group(capacity)
        if value < g.desired:
            assert all(i.lifecycle is not Lifecycle.IN_SERVICE for i in g.instances)
            assert not {i.id for i in g.instances} & pool_state.busy_instances


@settings(max_examples=200, deadline=None)
@given(
    spot_count=st.integers(0, 10),
    od_count=st.integers(0, 10),
    busy_mask=st.lists(st.booleans(), min_size=20, max_size=20),
    min_size=st.integers(0, 5),
)
def test_quiet_pool_scales_in_exactly_its_idle_instances(
    spot_count: int, od_count: int, busy_mask: list[bool], min_size: int
) -> None:
    spot = group(Capacity.SPOT, desired=spot_count, in_service=spot_count)
    on_demand = group(Capacity.ON_DEMAND, desired=od_count, in_service=od_count)
    ids = [i.id for g in (on_demand, spot) for i in g.instances]
    busy = frozenset(i for i, b in zip(ids, busy_mask, strict=False) if b)
    limits = replace(LIMITS, min_size=min_size)
    decision = decide(state(spot=spot, on_demand=on_demand, busy=busy, limits=limits), WATCHED)

    removed = [i for _, i in decision.terminate]
    assert not set(removed) & busy
    idle = [i for i in ids if i not in busy]  # on-demand listed first
    expected = max(0, min(len(idle), len(ids) - min_size))
    assert len(removed) == expected
    assert removed == idle[:expected]  # on-demand goes first


@settings(max_examples=60, deadline=None)
@given(
    loads=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 30)), min_size=1, max_size=30),
    spot_available=st.none() | st.integers(0, 30),
    # At least a tick to boot, as on EC2: a spot request the market fills late is launching
    # (never serving) when it appears, so it can still be cancelled.
    boot_ticks=st.integers(1, 3),
)
def test_ticks_never_kill_busy_work_and_a_quiet_pool_returns_to_min(
    loads: list[tuple[int, int]], spot_available: int | None, boot_ticks: int
) -> None:
    limits = replace(LIMITS, max_size=30, stabilization_window_s=60, fallback_grace_s=30)
    fleet = InMemoryCapacityProvider(
        {"p": (30, 10)}, boot_ticks=boot_ticks, spot_available=spot_available
    )
    policy = QueueDrainPolicy()
    memory = Memory()
    now = NOW
    quiet = [(0, 0)] * 20  # a stabilization window of nothing to do, and boots to finish
    for queued, in_flight in loads + quiet:
        groups = fleet.read()["p"]
        serving = sorted(
            i.id
            for g in (groups.spot, groups.on_demand)
            for i in g.instances
            if i.lifecycle is Lifecycle.IN_SERVICE
        )
        busy = frozenset(serving[: in_flight // limits.processes_per_instance])
        pool_state = PoolState(
            "p", now, limits, QueueLoad(queued, in_flight), groups, busy_instances=busy
        )
        decision = policy.decide(pool_state, memory)
        memory = decision.memory
        for capacity, value in decision.desired.items():
            g = groups.group(capacity)
            lowered_safely = not any(
                i.lifecycle is Lifecycle.IN_SERVICE or i.id in busy for i in g.instances
            )
            assert value > g.desired or lowered_safely, decision.reason
            fleet.set_desired(g, value)
        for _, instance_id in decision.terminate:
            assert instance_id not in busy
            fleet.terminate(instance_id)
        fleet.advance()
        now += 10
    groups = fleet.read()["p"]
    assert groups.spot.live + groups.on_demand.live == limits.min_size
    assert groups.spot.desired + groups.on_demand.desired == limits.min_size
