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
from dataclasses import dataclass

from autoscaler.model import (
    Action,
    Capacity,
    Decision,
    GroupState,
    Instance,
    Lifecycle,
    Memory,
    PoolGroups,
    PoolLimits,
    PoolState,
    QueueLoad,
)

__all__ = ["QueueDrainPolicy", "instances_needed", "processes_needed"]


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
        for group, want in ((spot, spot_want), (on_demand, od_want)):
            value = _new_desired(group, want)
            if value is not None:
                desired[group.capacity] = value

        action = Action.STEADY
        live = spot.live + on_demand.live
        if desired.get(Capacity.SPOT, spot.desired) > spot.desired:
            action = Action.SCALE_OUT
            reasons.append(f"spot desired {spot.desired} → {desired[Capacity.SPOT]}")
        if desired.get(Capacity.ON_DEMAND, on_demand.desired) > on_demand.desired:
            action = Action.FALLBACK if spot_missing else Action.SCALE_OUT
            why = _fallback_reason(spot, state.now, memory) if spot_missing else "beyond spot max"
            reasons.append(
                f"on-demand desired {on_demand.desired} → {desired[Capacity.ON_DEMAND]} ({why})"
            )

        terminate: list[tuple[Capacity, str]] = []
        keep = max(plan.floor, max(t for _, t in plan.memory.recommendations))
        excess = live - keep
        backlog_exceeds = load.queued > live * limits.processes_per_instance
        if excess > 0 and backlog_exceeds:
            reasons.append(f"{load.queued} queued exceed running capacity: no scale-in")
            excess = 0
        idle = _idle_in_service(groups, state.busy_instances)
        room = {
            g.capacity: desired.get(g.capacity, g.desired) - g.min_size for g in (spot, on_demand)
        }
        spot_caught_up = not plan.fallback and spot.in_service >= spot_want
        if excess > 0 and spot_caught_up and on_demand.live:
            # Spot has caught up: the on-demand stand-ins go first, without the window.
            chosen = _choose(idle, room, excess, only=Capacity.ON_DEMAND, taken=terminate)
            if chosen:
                terminate += chosen
                excess -= len(chosen)
                action = Action.REPLACE
                reasons.append(f"spot caught up: removing {len(chosen)} idle on-demand")
        if excess > 0:
            held = _window_held(plan.memory, state.now, limits.stabilization_window_s)
            if held:
                chosen = _choose(idle, room, excess, taken=terminate)
                terminate += chosen
                busy_left = excess - len(chosen)
                if chosen:
                    action = Action.SCALE_IN if action is not Action.REPLACE else action
                    reasons.append(
                        f"need {keep} < {live} running for {limits.stabilization_window_s:g}s: "
                        f"removing {len(chosen)} idle"
                    )
                if busy_left:
                    reasons.append(f"{busy_left} more when idle (busy or launching now)")
            elif action is Action.STEADY:
                action = Action.WAIT
                reasons.append(
                    f"need {keep} < {live} running; scale-in once that holds for "
                    f"{limits.stabilization_window_s:g}s"
                )
        if not reasons:
            reasons.append(f"need {plan.target}, have {live}")
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
        window = limits.stabilization_window_s
        kept = [(t, n) for t, n in memory.recommendations if t >= state.now - window]
        # The oldest entry at or before the window's start proves the window was watched whole.
        older = [(t, n) for t, n in memory.recommendations if t < state.now - window]
        recommendations = tuple(older[-1:] + kept + [(state.now, target)])
        short_since = None
        if spot.shortfall > 0:
            short_since = memory.spot_short_since or state.now
        fallback = short_since is not None and (
            state.now - short_since >= limits.fallback_grace_s or spot.capacity_failure is not None
        )
        return _Plan(target, floor, fallback, Memory(recommendations, short_since))


def _new_desired(group: GroupState, want: int) -> int | None:
    """The group's new desired capacity, or None to leave it.

    Up: at once. Down: only over requests not yet launched (nothing running dies); running
    instances leave by explicit, idle-only termination.
    """
    if want > group.desired:
        return want
    lowered = max(want, group.live, group.min_size)
    return lowered if lowered < group.desired else None


def _window_held(memory: Memory, now: float, window_s: float) -> bool:
    """Whether the recommendations cover the whole window (a fresh daemon must watch first)."""
    return bool(memory.recommendations) and memory.recommendations[0][0] <= now - window_s


def _idle_in_service(groups: PoolGroups, busy: frozenset[str]) -> list[tuple[Capacity, Instance]]:
    return [
        (g.capacity, i)
        for g in (groups.on_demand, groups.spot)  # on-demand first: it costs more
        for i in sorted(g.instances, key=lambda i: i.id)
        if i.lifecycle is Lifecycle.IN_SERVICE and i.id not in busy
    ]


def _choose(
    idle: list[tuple[Capacity, Instance]],
    room: dict[Capacity, int],
    count: int,
    *,
    only: Capacity | None = None,
    taken: list[tuple[Capacity, str]],
) -> list[tuple[Capacity, str]]:
    """Up to `count` idle instances, never taking a group's desired below its own minimum.

    `room` (desired minus minimum per group) is spent as instances are chosen; `taken` are
    already chosen this tick.
    """
    already = {i for _, i in taken}
    chosen: list[tuple[Capacity, str]] = []
    for capacity, instance in idle:
        if len(chosen) >= count:
            break
        if instance.id in already or room[capacity] <= 0:
            continue
        if only is not None and capacity is not only:
            continue
        room[capacity] -= 1
        chosen.append((capacity, instance.id))
    return chosen


def _fallback_reason(spot: GroupState, now: float, memory: Memory) -> str:
    if spot.capacity_failure:
        return f"spot capacity failure: {spot.capacity_failure}"
    since = memory.spot_short_since or now
    return f"spot short {spot.shortfall} for {now - since:.0f}s"
