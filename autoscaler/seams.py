"""The autoscaler's seams: each a small Protocol with a real and a test implementation.

The daemon's tick is read (QueueDepthSource, CapacityProvider) → decide (ScalingPolicy, pure) →
apply (CapacityProvider). The simulator drives the same policy through the in-memory
implementations of the other two (`autoscaler.in_memory`).
The fourth seam, `TerminationNoticeSource`, is the worker's (`worker.notices`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from fleetkit.autoscaler.model import (
    Decision,
    GroupState,
    Memory,
    PoolGroups,
    PoolState,
    QueueReading,
)

__all__ = ["CapacityProvider", "QueueDepthSource", "ScalingPolicy"]


class QueueDepthSource(Protocol):
    """What the queues hold, per pool, plus which instances are busy. Raises SourceUnavailable."""

    def read(self, pools: Mapping[str, Sequence[str]]) -> QueueReading:
        """`pools` maps each pool to its queue names."""
        ...


class ScalingPolicy(Protocol):
    """State → decision, with no I/O."""

    def decide(self, state: PoolState, memory: Memory) -> Decision: ...


class CapacityProvider(Protocol):
    """The Auto Scaling groups of one environment. Raises CapacityUnavailable."""

    def read(self) -> Mapping[str, PoolGroups]:
        """Every pool's groups, by pool name."""
        ...

    def set_desired(self, group: GroupState, desired: int) -> None:
        """Set a group's desired capacity (no call when it would not change)."""
        ...

    def terminate(self, instance_id: str) -> None:
        """Remove one chosen instance and lower its group's desired capacity by one."""
        ...

    def gone(self, instance_ids: Collection[str]) -> set[str]:
        """Which of these instances are terminated or shutting down (not merely detached)."""
        ...
