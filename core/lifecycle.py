"""Auto Scaling lifecycle states, read from botocore's own service model (never a hand-kept
list, which drifts: `Terminating:Retained` came later), folded into what fleetkit acts on.

The autoscaler sizes by `lifecycle_of` (launching instances count as capacity, leaving ones do
not); the worker stops when `is_terminating` says its instance is going away; `infra status`
counts by both.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache

from botocore.loaders import create_loader

__all__ = ["Lifecycle", "asg_lifecycle_states", "is_terminating", "lifecycle_of"]


class Lifecycle(StrEnum):
    """An Auto Scaling instance's lifecycle state, folded into what sizing cares about."""

    PENDING = "pending"  # launching (Pending, Pending:Wait, Pending:Proceed): counts as capacity
    IN_SERVICE = "in-service"
    LEAVING = "leaving"  # Terminating*, Terminated, Detaching, Detached, Quarantined
    STANDBY = "standby"  # Standby, root volume replacement, warm pool: not capacity, not ours


@cache
def asg_lifecycle_states() -> frozenset[str]:
    """Every `LifecycleState` of the Auto Scaling API that the installed botocore knows."""
    model = create_loader().load_service_model("autoscaling", "service-2")
    return frozenset(model["shapes"]["LifecycleState"]["enum"])


_LEAVING = ("Terminating", "Terminated", "Detach", "Quarantined")


def lifecycle_of(state: str) -> Lifecycle:
    """Where an instance in `state` stands for sizing; a state newer than botocore is standby."""
    if state.startswith("Warmed:"):
        return Lifecycle.STANDBY  # in the warm pool, not in the group's capacity
    if state.startswith("Pending"):
        return Lifecycle.PENDING
    if state == "InService":
        return Lifecycle.IN_SERVICE
    if state.startswith(_LEAVING):
        return Lifecycle.LEAVING
    return Lifecycle.STANDBY


def is_terminating(state: str) -> bool:
    """Whether an instance in `state` is on its way to termination, warm pool included."""
    return state.removeprefix("Warmed:").startswith(("Terminating", "Terminated"))
