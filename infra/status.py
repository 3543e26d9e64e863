"""What `infra status` shows: stack state, outputs, and each group's size by lifecycle state."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fleetkit.core.aws import AwsClients, aws_errors
from fleetkit.core.environment import Environment
from fleetkit.core.lifecycle import Lifecycle, is_terminating, lifecycle_of
from fleetkit.infra.blueprints.common import TAG_CAPACITY, TAG_POOL, TAG_ROLE
from fleetkit.infra.stacks import CloudFormationStacks

__all__ = ["FleetStatus", "GroupStatus", "read_status", "summarize_group"]

_ASG = "AWS::AutoScaling::AutoScalingGroup"


@dataclass(frozen=True)
class GroupStatus:
    logical_id: str
    name: str
    pool: str
    role: str
    capacity: str
    desired: int
    min_size: int
    max_size: int
    in_service: int
    pending: int
    terminating: int


@dataclass(frozen=True)
class FleetStatus:
    stack: str
    status: str
    reason: str | None
    termination_protection: bool
    outputs: dict[str, str]
    groups: list[GroupStatus]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize_group(logical_id: str, group: dict[str, Any]) -> GroupStatus:
    """One DescribeAutoScalingGroups entry → counts by lifecycle state (pure)."""
    tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
    states = [i.get("LifecycleState", "") for i in group.get("Instances", [])]
    return GroupStatus(
        logical_id=logical_id,
        name=group["AutoScalingGroupName"],
        pool=tags.get(TAG_POOL, "?"),
        role=tags.get(TAG_ROLE, "?"),
        capacity=tags.get(TAG_CAPACITY, "?"),
        desired=int(group.get("DesiredCapacity", 0)),
        min_size=int(group.get("MinSize", 0)),
        max_size=int(group.get("MaxSize", 0)),
        in_service=sum(lifecycle_of(s) is Lifecycle.IN_SERVICE for s in states),
        pending=sum(lifecycle_of(s) is Lifecycle.PENDING for s in states),
        terminating=sum(is_terminating(s) for s in states),
    )


def read_status(env: Environment, clients: AwsClients) -> FleetStatus | None:
    """None when the stack does not exist."""
    stacks = CloudFormationStacks(clients.client("cloudformation"))
    state = stacks.describe(env.stack)
    if state is None:
        return None
    names = stacks.physical_ids(env.stack, _ASG)
    by_name: dict[str, dict[str, Any]] = {}
    autoscaling = clients.client("autoscaling")
    wanted = sorted(names.values())
    with aws_errors("describing Auto Scaling groups"):
        for start in range(0, len(wanted), 50):
            pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
                AutoScalingGroupNames=wanted[start : start + 50]
            )
            for page in pages:
                for group in page["AutoScalingGroups"]:
                    by_name[group["AutoScalingGroupName"]] = group
    groups = [
        summarize_group(logical, by_name[name])
        for logical, name in sorted(names.items())
        if name in by_name
    ]
    groups.sort(key=lambda g: (g.role != "worker", g.pool, g.capacity))
    return FleetStatus(
        stack=state.name,
        status=state.status,
        reason=state.reason,
        termination_protection=state.termination_protection,
        outputs=dict(sorted(state.outputs.items())),
        groups=groups,
    )
