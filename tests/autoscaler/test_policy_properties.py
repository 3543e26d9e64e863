"""The scaling policy's properties (hypothesis): bounds, idle-only scale-in, no scale-in over a
backlog, and a simulated run that never kills busy work. The tables of cases: test_policy.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider
from fleetkit.autoscaler.model import (
    Capacity,
    GroupState,
    Hold,
    Instance,
    Lifecycle,
    Memory,
    PoolGroups,
    PoolState,
    QueueLoad,
)
from fleetkit.autoscaler.policy import QueueDrainPolicy
from tests.autoscaler.test_policy import LIMITS, NOW, WATCHED, decide, group, state


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
        # Around what a few instances run, often: where a scale-in meets a backlog.
        queued=draw(st.just(0) | st.integers(0, 100) | st.integers(0, 500)),
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
    # What runs, as the policy counts it: in service or launching, but no more than desired (a
    # replacement launched ahead of a rebalance is not extra capacity).
    running = sum(min(g.live, g.desired) for g in (groups.spot, groups.on_demand))
    if removed:
        # Never while the backlog exceeds capacity, never below the floor or a group's min.
        assert load.queued <= running * limits.processes_per_instance
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
    desired=st.integers(2, 10),
    ahead=st.integers(1, 5),
    per_instance=st.integers(1, 4),
    data=st.data(),
)
def test_no_scale_in_while_the_backlog_exceeds_what_runs(
    desired: int, ahead: int, per_instance: int, data: st.DataObject
) -> None:
    # Replacements launched ahead of a rebalance: more instances than desired, but only
    # `desired` of them are capacity. Short jobs: the need alone would allow a scale-in.
    spot = group(Capacity.SPOT, desired=desired, in_service=desired + ahead)
    limits = replace(LIMITS, processes_per_instance=per_instance)
    queued = data.draw(st.integers(desired * per_instance + 1, (desired + ahead) * per_instance))
    decision = decide(state(queued=queued, duration=0.001, spot=spot, limits=limits), WATCHED)
    assert decision.terminate == ()
    assert "exceed running capacity" in decision.reason


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
