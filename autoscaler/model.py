"""What the autoscaler reads, remembers and decides: plain frozen values, no I/O.

The seams (`autoscaler.seams`) produce `QueueReading` and `PoolGroups`; the policy turns a
`PoolState` plus its `Memory` into a `Decision`; the daemon applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from fleetkit.core.lifecycle import Lifecycle
from fleetkit.core.tags import Capacity

__all__ = [
    "Action",
    "Capacity",
    "Decision",
    "GroupState",
    "Hold",
    "Instance",
    "Lifecycle",
    "Memory",
    "PoolGroups",
    "PoolLimits",
    "PoolState",
    "QueueLoad",
    "QueueReading",
]


@dataclass(frozen=True)
class Instance:
    id: str
    lifecycle: Lifecycle
    instance_type: str = ""


@dataclass(frozen=True)
class GroupState:
    """One Auto Scaling group as read this tick."""

    name: str
    capacity: Capacity
    desired: int
    min_size: int
    max_size: int
    instances: tuple[Instance, ...] = ()
    # The status message of a recent scaling activity that failed for want of spot capacity.
    capacity_failure: str | None = None

    # Cached: the policy asks for these many times per tick, and the instances never change.
    @cached_property
    def in_service(self) -> int:
        return sum(1 for i in self.instances if i.lifecycle is Lifecycle.IN_SERVICE)

    @cached_property
    def pending(self) -> int:
        return sum(1 for i in self.instances if i.lifecycle is Lifecycle.PENDING)

    @property
    def live(self) -> int:
        """Instances that are or will soon be capacity: in service plus launching."""
        return self.in_service + self.pending

    @property
    def shortfall(self) -> int:
        """Desired instances the group has not even started to launch."""
        return max(0, self.desired - self.live)


@dataclass(frozen=True)
class PoolGroups:
    """A pool's two groups: spot first, on-demand as the fallback."""

    spot: GroupState
    on_demand: GroupState

    def group(self, capacity: Capacity) -> GroupState:
        return self.spot if capacity is Capacity.SPOT else self.on_demand

    @cached_property
    def instance_ids(self) -> frozenset[str]:
        return frozenset(i.id for g in (self.spot, self.on_demand) for i in g.instances)


@dataclass(frozen=True)
class QueueLoad:
    """What a pool's queues hold, summed over them."""

    queued: int
    in_flight: int
    # Jobs per second over the rate window; None until the window has two samples.
    arrival_rate: float | None = None
    completion_rate: float | None = None
    # Seconds; None until a job of these queues has ended.
    mean_duration_s: float | None = None


@dataclass(frozen=True)
class QueueReading:
    """One read of Redis for every pool: queue figures plus which instances are busy."""

    loads: Mapping[str, QueueLoad]
    # Instances with at least one worker running a job right now.
    busy_instances: frozenset[str] = frozenset()
    # Worker names by the instance they run on (from the workers' heartbeats).
    workers_by_instance: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Holds by pool, read in the same round trip.
    holds: Mapping[str, Hold] = field(default_factory=dict)


@dataclass(frozen=True)
class Hold:
    """A manual floor: the daemon never goes below `count` until `until` (epoch seconds)."""

    count: int
    until: float | None  # None: until released

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True)
class PoolLimits:
    """The pool's static settings the policy needs."""

    min_size: int
    max_size: int
    processes_per_instance: int
    target_drain_s: float
    default_job_duration_s: float
    stabilization_window_s: float
    fallback_grace_s: float


@dataclass(frozen=True)
class PoolState:
    """Everything the policy sees for one pool on one tick. None means it could not be read."""

    pool: str
    now: float
    limits: PoolLimits
    load: QueueLoad | None
    groups: PoolGroups | None
    busy_instances: frozenset[str] = frozenset()
    hold: Hold | None = None


@dataclass(frozen=True)
class Memory:
    """What the policy carries from one tick to the next for one pool."""

    # (time, instances needed) for every tick inside the stabilization window, oldest first.
    recommendations: tuple[tuple[float, int], ...] = ()
    # When the spot group was first seen short of its desired capacity (None: it is not).
    spot_short_since: float | None = None


class Action(StrEnum):
    SCALE_OUT = "scale-out"
    FALLBACK = "fallback"  # spot short: capacity put on the on-demand group
    REPLACE = "replace-on-demand"  # spot caught up: idle on-demand instances removed
    SCALE_IN = "scale-in"  # idle instances removed
    WAIT = "wait"  # less is needed, but not yet for the whole stabilization window
    STEADY = "steady"
    KEEP = "keep"  # data missing: capacity kept as it is


@dataclass(frozen=True)
class Decision:
    """What to do to one pool, and why. `desired` holds only groups whose value changes."""

    pool: str
    action: Action
    reason: str
    memory: Memory
    needed_processes: float | None = None
    target: int | None = None
    desired: Mapping[Capacity, int] = field(default_factory=dict)
    # Idle instances to remove, each lowering its group's desired capacity by one.
    terminate: tuple[tuple[Capacity, str], ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.desired or self.terminate)
