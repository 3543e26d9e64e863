"""In-memory implementations of the read and apply seams, for tests, the benchmark and the
offline simulator (no Redis, no AWS).

`InMemoryCapacityProvider` behaves like Auto Scaling where it matters to the policy: raising
desired launches instances (pending for `boot_ticks` calls of `advance`, then in service),
spot launches stop at `spot_available` (the shortfall AWS would report as failed activities),
lowering desired below the running count terminates instances the group picks itself (the
newest), and terminating a chosen instance lowers desired by one. Every call is recorded.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fleetkit.autoscaler.errors import CapacityUnavailable, SourceUnavailable
from fleetkit.autoscaler.model import (
    Capacity,
    GroupState,
    Instance,
    Lifecycle,
    PoolGroups,
    QueueReading,
)

__all__ = ["InMemoryCapacityProvider", "InMemoryQueueDepthSource"]

_SPOT_FAILURE = "Could not launch Spot Instances. InsufficientInstanceCapacity"


@dataclass
class _Group:
    state: GroupState
    ages: dict[str, int] = field(default_factory=dict)  # instance → ticks since launch


class InMemoryCapacityProvider:
    """A `CapacityProvider` over in-memory groups; `fail_reads` simulates an AWS outage."""

    def __init__(
        self,
        pools: Mapping[str, tuple[int, int]],
        *,
        boot_ticks: int = 0,
        spot_available: int | None = None,
        report_failures: bool = True,
    ) -> None:
        """`pools` maps a pool to (spot max, on-demand max)."""
        self.groups: dict[str, dict[Capacity, _Group]] = {}
        for pool, (spot_max, od_max) in pools.items():
            self.groups[pool] = {
                capacity: _Group(GroupState(f"{pool}-{capacity.value}", capacity, 0, 0, maximum))
                for capacity, maximum in ((Capacity.SPOT, spot_max), (Capacity.ON_DEMAND, od_max))
            }
        self.boot_ticks = boot_ticks
        self.spot_available = spot_available
        # AWS reports a failed launch activity for a spot shortfall, but not always at once.
        self.report_failures = report_failures
        self.calls: list[tuple[str, str, int | str]] = []
        self.terminated: list[str] = []
        self.fail_reads = False
        self._ids = itertools.count()

    # --- the seam --------------------------------------------------------------------------

    def read(self) -> Mapping[str, PoolGroups]:
        if self.fail_reads:
            raise CapacityUnavailable("describe_auto_scaling_groups: simulated outage")
        return {
            pool: PoolGroups(g[Capacity.SPOT].state, g[Capacity.ON_DEMAND].state)
            for pool, g in self.groups.items()
        }

    def set_desired(self, group: GroupState, desired: int) -> None:
        if desired == self._find(group.name).state.desired:
            return
        self.calls.append(("set_desired", group.name, desired))
        self._resize(self._find(group.name), desired)

    def terminate(self, instance_id: str) -> None:
        self.calls.append(("terminate", "", instance_id))
        for groups in self.groups.values():
            for g in groups.values():
                if any(i.id == instance_id for i in g.state.instances):
                    kept = tuple(i for i in g.state.instances if i.id != instance_id)
                    g.state = replace(g.state, instances=kept, desired=g.state.desired - 1)
                    g.ages.pop(instance_id, None)
                    self.terminated.append(instance_id)
                    return

    def gone(self, instance_ids: Collection[str]) -> set[str]:
        return {i for i in instance_ids if i in self.terminated}

    # --- simulation ------------------------------------------------------------------------

    def advance(self) -> None:
        """One step of time: pending instances age and come into service after `boot_ticks`."""
        for groups in self.groups.values():
            for g in groups.values():
                instances = []
                for instance in g.state.instances:
                    g.ages[instance.id] = g.ages.get(instance.id, 0) + 1
                    if instance.lifecycle is Lifecycle.PENDING and (
                        g.ages[instance.id] >= self.boot_ticks
                    ):
                        instance = replace(instance, lifecycle=Lifecycle.IN_SERVICE)
                    instances.append(instance)
                g.state = replace(g.state, instances=tuple(instances))
                self._resize(g, g.state.desired)  # spot may have capacity again

    def _find(self, name: str) -> _Group:
        for groups in self.groups.values():
            for g in groups.values():
                if g.state.name == name:
                    return g
        raise CapacityUnavailable(f"no group {name}")

    def _resize(self, g: _Group, desired: int) -> None:
        instances = list(g.state.instances)
        if len(instances) > desired:  # the group picks its victims: newest first
            for gone in instances[desired:]:
                self.terminated.append(gone.id)
            instances = instances[:desired]
        room = desired - len(instances)
        if g.state.capacity is Capacity.SPOT and self.spot_available is not None:
            spot_total = sum(len(p[Capacity.SPOT].state.instances) for p in self.groups.values())
            room = min(room, max(0, self.spot_available - spot_total))
        lifecycle = Lifecycle.PENDING if self.boot_ticks else Lifecycle.IN_SERVICE
        for _ in range(max(0, room)):
            instance_id = f"i-{next(self._ids):017x}"
            instances.append(Instance(instance_id, lifecycle))
            g.ages[instance_id] = 0
        short = len(instances) < desired and g.state.capacity is Capacity.SPOT
        short = short and self.report_failures
        g.state = replace(
            g.state,
            desired=desired,
            instances=tuple(instances),
            capacity_failure=_SPOT_FAILURE if short else None,
        )


class InMemoryQueueDepthSource:
    """A `QueueDepthSource` returning whatever reading its caller sets; `fail` simulates a
    Redis outage."""

    def __init__(self, reading: QueueReading | None = None) -> None:
        self.reading = reading or QueueReading(loads={})
        self.fail = False

    def read(self, pools: Mapping[str, Sequence[str]]) -> QueueReading:
        if self.fail:
            raise SourceUnavailable("cannot read queues from Redis: simulated outage")
        return self.reading
