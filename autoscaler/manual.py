"""`autoscaler scale POOL N` and `autoscaler release POOL`: a manual burst with a hold.

Validation happens before anything is read or written, so bad input changes nothing. Growing
is one SetDesiredCapacity per group (spot up to its max, the rest on on-demand). Shrinking never
lowers desired capacity over running instances (the group would pick busy victims): it removes
idle instances only (on-demand first) and says how many busy ones remain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetkit.autoscaler.errors import CapacityUnavailable
from fleetkit.autoscaler.holds import HoldStore
from fleetkit.autoscaler.model import Capacity, Hold, PoolGroups
from fleetkit.autoscaler.policy import cancel_unlaunched, idle_victims
from fleetkit.autoscaler.seams import CapacityProvider
from fleetkit.core.environment import Environment
from fleetkit.core.errors import UsageError
from fleetkit.core.settings import PoolSettings

__all__ = ["ScalePlan", "ScaleResult", "plan_scale", "release", "scale", "validate_scale"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScalePlan:
    pool: str
    count: int
    desired: dict[Capacity, int]  # only groups whose value changes
    terminate: tuple[tuple[Capacity, str], ...]
    busy_left: int  # instances above N that are busy (or launching) and stay for now


@dataclass
class ScaleResult:
    plan: ScalePlan
    hold: Hold | None
    applied: list[str] = field(default_factory=list)


def validate_scale(env: Environment, pool: str, count: int) -> PoolSettings:
    """The pool's settings, or a UsageError naming the bad value."""
    if pool not in env.pools:
        known = ", ".join(sorted(env.pools))
        raise UsageError(f"pool {pool!r}: no such pool in environment {env.name} (pools: {known})")
    settings = env.pools[pool]
    if count < 0:
        raise UsageError(f"N {count}: must be 0 or more")
    if count > settings.max_size:
        raise UsageError(f"N {count}: above pool {pool!r} max_size {settings.max_size}")
    return settings


def plan_scale(
    pool: str, count: int, groups: PoolGroups, busy: frozenset[str] = frozenset()
) -> ScalePlan:
    """Pure: how to bring the pool to `count` instances without touching a busy one."""
    spot, on_demand = groups.spot, groups.on_demand
    spot_want = min(count, spot.max_size)
    od_want = count - spot_want
    if od_want > on_demand.max_size:
        raise UsageError(
            f"N {count}: more than the spot group's max {spot.max_size} plus the on-demand "
            f"group's max {on_demand.max_size}"
        )
    desired: dict[Capacity, int] = {}
    for group, want in ((spot, spot_want), (on_demand, od_want)):
        if want > group.desired:
            desired[group.capacity] = want
        else:
            cancel = cancel_unlaunched(group, want, busy)
            if cancel is not None:
                desired[group.capacity] = cancel
    # Going down: running instances beyond N leave only when idle, on-demand first; desired
    # capacity is never lowered over them (the group would pick busy victims).
    excess = max(0, spot.live + on_demand.live - count)
    terminate = idle_victims(groups, busy, excess, desired=desired)
    return ScalePlan(pool, count, desired, tuple(terminate), excess - len(terminate))


def scale(
    env: Environment,
    pool: str,
    count: int,
    *,
    hold_s: float,
    provider: CapacityProvider,
    holds: HoldStore,
    busy: Callable[[], frozenset[str]],
    by: str = "",
) -> ScaleResult:
    """Record the hold, then change the groups; a failed change restores the previous hold."""
    validate_scale(env, pool, count)
    groups = provider.read().get(pool)
    if groups is None:
        raise CapacityUnavailable(f"pool {pool!r}: its Auto Scaling groups were not found")
    plan = plan_scale(
        pool,
        count,
        groups,
        busy() if count < groups.spot.live + groups.on_demand.live else frozenset(),
    )
    previous = holds.get(pool)
    hold = holds.set(pool, count, hold_s, by=by)
    result = ScaleResult(plan, hold)
    try:
        for capacity, desired in plan.desired.items():
            group = groups.group(capacity)
            provider.set_desired(group, desired)
            result.applied.append(f"{capacity.value} desired {group.desired} → {desired}")
        for capacity, instance_id in plan.terminate:
            provider.terminate(instance_id)
            result.applied.append(f"removed idle {capacity.value} instance {instance_id}")
    except CapacityUnavailable as exc:
        if not result.applied:
            holds.restore(pool, previous)  # nothing changed: nothing half-done either
            raise
        done = "; ".join(result.applied)
        raise CapacityUnavailable(f"{exc} (already done: {done}; hold kept)") from exc
    return result


def release(env: Environment, pool: str, holds: HoldStore) -> bool:
    if pool not in env.pools:
        known = ", ".join(sorted(env.pools))
        raise UsageError(f"pool {pool!r}: no such pool in environment {env.name} (pools: {known})")
    return holds.release(pool)
