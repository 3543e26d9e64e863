"""The scaling policy: one pool's state and memory in, a decision out. No I/O, no clock.

Sizing is Little's law plus a drain term: busy processes = max(λ·S, jobs in flight), and a
backlog Q needs Q·S/T more to be gone within T seconds. Instances = ceil(processes ÷ processes per
instance), within [min, max] and never below a hold.

- Scale out at once: desired capacity goes up the same tick (launching instances count).
- Scale in only when the highest need of the stabilization window is below what runs, and only by
  removing idle instances (on-demand first): lowering desired capacity would let the group pick
  victims, and it picks busy ones.
- Spot short of its desired capacity for the fallback grace (or a spot capacity failure reported):
  the shortfall goes on the on-demand group. Spot keeps asking; once it has caught up, the idle
  on-demand instances are removed.
- Missing data keeps capacity as it is: never scale to zero on a failed read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleetkit.autoscaler.model import (
    Action,
    Capacity,
    Decision,
    GroupState,
    Lifecycle,
    Memory,
    PoolGroups,
    PoolLimits,
    PoolState,
    QueueLoad,
)

__all__ = [
    "QueueDrainPolicy",
    "cancel_unlaunched",
    "idle_victims",
    "instances_needed",
    "processes_needed",
]


def processes_needed(load: QueueLoad, limits: PoolLimits) -> float:
    """λ·S (or the jobs in flight, if more) plus Q·S/T."""
    duration = load.mean_duration_s or limits.default_job_duration_s
    steady = (load.arrival_rate or 0.0) * duration
    # Jobs in flight hold their processes now, whatever the rate estimate says.
    busy = max(steady, float(load.in_flight))
    return busy + load.queued * duration / limits.target_drain_s


def instances_needed(processes: float, limits: PoolLimits) -> int:
    # A hair of tolerance so 4.0000000001 processes on 2 per instance is 2 instances, not 3.
    return max(0, math.ceil(processes / limits.processes_per_instance - 1e-9))


@dataclass(frozen=True)
class _Plan:
    target: int
    floor: int
    fallback: bool
    memory: Memory


class QueueDrainPolicy:
    """The `ScalingPolicy` fleetkit runs; the simulator drives this same class."""

    def decide(self, state: PoolState, memory: Memory) -> Decision:
        groups, load, limits = state.groups, state.load, state.limits
        if groups is None or load is None:
            what = "AWS" if groups is None else "Redis"
            # The window starts over once data is back: no scale-in on one fresh reading.
            fresh = Memory(spot_short_since=memory.spot_short_since)
            return Decision(state.pool, Action.KEEP, f"{what} unreadable: capacity kept", fresh)
        needed = processes_needed(load, limits)
        plan = self._plan(state, memory, needed)
        spot, on_demand = groups.spot, groups.on_demand
        reasons: list[str] = []
        desired: dict[Capacity, int] = {}

        spot_want = min(plan.target, spot.max_size)
        overflow = plan.target - spot_want  # beyond the spot group's max: on-demand
        spot_missing = max(0, spot_want - spot.live) if plan.fallback else 0
        od_want = min(on_demand.max_size, overflow + spot_missing)

        # Desired capacity only ever goes up here. Lowering it would let the group choose
        # victims, and it chooses busy ones; instances leave by idle-only termination below.
        action = Action.STEADY
        if spot_want > spot.desired:
            desired[Capacity.SPOT] = spot_want
            action = Action.SCALE_OUT
            reasons.append(f"spot desired {spot.desired} → {spot_want}")
        if od_want > on_demand.desired:
            desired[Capacity.ON_DEMAND] = od_want
            action = Action.FALLBACK if spot_missing else Action.SCALE_OUT
            why = _fallback_reason(spot, state.now, memory) if spot_missing else "beyond spot max"
            reasons.append(f"on-demand desired {on_demand.desired} → {od_want} ({why})")

        # What the groups mean to keep: a replacement launched ahead of a rebalance (live
        # above desired) is not extra capacity, its at-risk twin is about to go.
        running = min(spot.live, spot.desired) + min(on_demand.live, on_demand.desired)
        keep = max(plan.floor, max(n for _, n in plan.memory.recommendations))
        excess = running - keep
        terminate: list[tuple[Capacity, str]] = []
        if excess > 0 and load.queued > running * limits.processes_per_instance:
            reasons.append(f"{load.queued} queued exceed running capacity: no scale-in")
            excess = 0
        busy = state.busy_instances
        spot_caught_up = not plan.fallback and spot.shortfall == 0 and spot.in_service >= spot_want
        if excess > 0 and spot_caught_up and on_demand.live:
            # Spot has caught up: the on-demand stand-ins go first, without the window.
            chosen = idle_victims(groups, busy, excess, desired=desired, only=Capacity.ON_DEMAND)
            if chosen:
                terminate += chosen
                excess -= len(chosen)
                action = Action.REPLACE
                reasons.append(f"spot caught up: removing {len(chosen)} idle on-demand")
        held = _window_held(plan.memory, state.now, limits.stabilization_window_s)
        if excess > 0 and held:
            chosen = idle_victims(groups, busy, excess, desired=desired, taken=terminate)
            terminate += chosen
            busy_left = excess - len(chosen)
            if chosen:
                action = Action.SCALE_IN if action is not Action.REPLACE else action
                reasons.append(
                    f"need {keep} < {running} running for {limits.stabilization_window_s:g}s: "
                    f"removing {len(chosen)} idle"
                )
            if busy_left:
                reasons.append(f"{busy_left} more when idle (busy or launching now)")
        elif excess > 0 and action is Action.STEADY:
            action = Action.WAIT
            reasons.append(
                f"need {keep} < {running} running; scale-in once that holds for "
                f"{limits.stabilization_window_s:g}s"
            )
        if held:
            for group, want in ((spot, spot_want), (on_demand, od_want)):
                floor = max(want, keep if group is spot else 0)
                cancel = cancel_unlaunched(group, floor, state.busy_instances)
                if cancel is not None:
                    desired[group.capacity] = cancel
                    if action in (Action.STEADY, Action.WAIT):
                        action = Action.SCALE_IN
                    reasons.append(
                        f"{group.capacity.value} desired {group.desired} → {cancel}: "
                        "cancelling requests never launched (nothing in service)"
                    )
        if not reasons:
            reasons.append(f"need {plan.target}, have {running}")
        if state.hold is not None and state.hold.active(state.now):
            reasons.append(f"hold ≥ {state.hold.count}")
        return Decision(
            pool=state.pool,
            action=action,
            reason="; ".join(reasons),
            memory=plan.memory,
            needed_processes=needed,
            target=plan.target,
            desired=desired,
            terminate=tuple(terminate),
        )

    @staticmethod
    def _plan(state: PoolState, memory: Memory, needed: float) -> _Plan:
        assert state.groups is not None
        limits, spot = state.limits, state.groups.spot
        hold = state.hold.count if state.hold is not None and state.hold.active(state.now) else 0
        floor = min(max(limits.min_size, hold), limits.max_size)
        raw = instances_needed(needed, limits)
        if state.load is not None and (state.load.queued or state.load.in_flight):
            raw = max(raw, 1)  # any work at all keeps one instance
        target = min(max(raw, floor), limits.max_size)
        # The window remembers the need alone: a released hold must not linger in it.
        need = min(max(raw, limits.min_size), limits.max_size)
        window = limits.stabilization_window_s
        kept = [(t, n) for t, n in memory.recommendations if t >= state.now - window]
        # The oldest entry at or before the window's start proves the window was watched whole.
        older = [(t, n) for t, n in memory.recommendations if t < state.now - window]
        recommendations = tuple(older[-1:] + kept + [(state.now, need)])
        short_since = None
        if spot.shortfall > 0:
            short_since = memory.spot_short_since or state.now
        # A reported capacity failure skips the grace, but only for a shortfall already seen on
        # an earlier tick: right after a scale-out, AWS lists instances a moment late.
        fallback = short_since is not None and (
            state.now - short_since >= limits.fallback_grace_s
            or (spot.capacity_failure is not None and short_since < state.now)
        )
        return _Plan(target, floor, fallback, Memory(recommendations, short_since))


def cancel_unlaunched(group: GroupState, want: int, busy: frozenset[str]) -> int | None:
    """A lower desired capacity for a group with no instance in service, else None.

    Spot requests the market never filled would launch idle instances whenever capacity comes
    back. With nothing in service and no worker busy, lowering desired cannot pick a victim
    that runs a job: at most an instance still launching.
    """
    if group.desired <= max(want, group.min_size):
        return None
    serving = any(i.lifecycle is Lifecycle.IN_SERVICE or i.id in busy for i in group.instances)
    return None if serving else max(want, group.min_size)


def _window_held(memory: Memory, now: float, window_s: float) -> bool:
    """Whether the recommendations cover the whole window (a fresh daemon must watch first)."""
    return bool(memory.recommendations) and memory.recommendations[0][0] <= now - window_s


def idle_victims(
    groups: PoolGroups,
    busy: frozenset[str],
    count: int,
    *,
    desired: Mapping[Capacity, int] | None = None,
    only: Capacity | None = None,
    taken: Sequence[tuple[Capacity, str]] = (),
) -> list[tuple[Capacity, str]]:
    """Up to `count` instances to remove: in service and idle, on-demand first (it costs more),
    by id within a group, and never so many that a group's desired capacity (as `desired` sets
    it, else the group's own) would go below its minimum. The daemon and `scale` both choose
    here.

    `taken` were already chosen (by an earlier call for the same decision): they are not chosen
    again and use up their group's room. `only` limits the choice to one group.
    """
    desired = desired or {}
    already = {i for _, i in taken}
    chosen: list[tuple[Capacity, str]] = []
    for group in (groups.on_demand, groups.spot):
        if only is not None and group.capacity is not only:
            continue
        spent = sum(1 for capacity, _ in taken if capacity is group.capacity)
        room = desired.get(group.capacity, group.desired) - group.min_size - spent
        want = min(room, count - len(chosen))
        if want <= 0:
            continue
        idle = sorted(
            i.id
            for i in group.instances
            if i.lifecycle is Lifecycle.IN_SERVICE and i.id not in busy and i.id not in already
        )
        chosen += [(group.capacity, instance_id) for instance_id in idle[:want]]
    return chosen


def _fallback_reason(spot: GroupState, now: float, memory: Memory) -> str:
    if spot.capacity_failure:
        return f"spot capacity failure: {spot.capacity_failure}"
    since = memory.spot_short_since or now
    return f"spot short {spot.shortfall} for {now - since:.0f}s"
