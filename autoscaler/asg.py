"""`CapacityProvider` over EC2 Auto Scaling: one environment's spot and on-demand worker groups.

Groups are found by their tags (`fleetkit.core.tags`), never by name: a stack
update may recreate a group under a new physical name.

Retries are this module's alone. The CLI builds the provider's clients with botocore's retries
off (`max_attempts=1`, `autoscaler.cli`): botocore's attempts under ours would multiply into
minutes of one stalled tick. A throttle, a 5xx, `ResourceContention` or Auto Scaling's
`ScalingActivityInProgress` gets a short full-jitter backoff, up to `max_attempts` tries; any
other error, and a connection error or timeout, raises `CapacityUnavailable` at once. The daemon
then keeps capacity as it is until its next tick.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from fleetkit.autoscaler.backoff import full_jitter
from fleetkit.autoscaler.errors import CapacityUnavailable
from fleetkit.autoscaler.model import GroupState, Instance, PoolGroups
from fleetkit.core.lifecycle import lifecycle_of
from fleetkit.core.tags import (
    ROLE_WORKER,
    TAG_CAPACITY,
    TAG_ENV,
    TAG_POOL,
    TAG_ROLE,
    Capacity,
)

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.client import AutoScalingClient
    from mypy_boto3_autoscaling.type_defs import ActivityTypeDef, AutoScalingGroupTypeDef
    from mypy_boto3_ec2.client import EC2Client

__all__ = [
    "ACTIVITY_RECORDS",
    "CAPACITY_FAILURE_WINDOW_S",
    "AsgCapacityProvider",
    "capacity_failure",
    "is_capacity_shortage",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# A spot launch failure older than this says little about the capacity available now.
CAPACITY_FAILURE_WINDOW_S = 600.0
# The newest activities are enough: a group records one activity per launch or termination.
ACTIVITY_RECORDS = 20
# DescribeInstances takes at most 1000 instance ids per call.
_EC2_BATCH = 1000

# Error codes worth another try (with any 5xx, and a "Rate exceeded" message).
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",  # EC2's throttle
        "TooManyRequestsException",
        "ScalingActivityInProgress",
        "ScalingActivityInProgressFault",
        "ResourceContention",
        "ResourceContentionFault",
    }
)

# How AWS words a spot launch that failed for want of capacity (or of a price or quota that
# would get it): compared lower-case against a scaling activity's status message.
_SHORTAGE_MARKERS = (
    "insufficientinstancecapacity",
    "insufficient capacity",
    "capacity-not-available",
    "there is no spot capacity available",
    "do not have sufficient",  # "We currently do not have sufficient m5.large capacity in …"
    "maxspotinstancecountexceeded",
    "spotmaxpricetoolow",
    "unfulfillablecapacity",
)

# Launch activity states reached only once EC2 has handed over an instance: spot capacity was
# there, even if the launching lifecycle hook still holds the instance (MidLifecycleAction).
_LAUNCHED = frozenset(
    {"PreInService", "InProgress", "MidLifecycleAction", "WaitingForInstanceWarmup", "Successful"}
)
_FAILED = frozenset({"Failed", "Cancelled"})

# TerminateInstanceInAutoScalingGroup's ValidationErrors for an instance that already left or is
# leaving: "Instance Id not found - No managed instance found for instance ID: i-…", and
# "The instance i-… is not in InService or EnteringStandby or Standby."
_ALREADY_LEAVING = ("not found", "is not in inservice", "being terminated")

_CAPACITIES = {c.value: c for c in Capacity}

_GONE_STATES = frozenset({"shutting-down", "terminated"})
_NOT_FOUND = "InvalidInstanceID.NotFound"
_MALFORMED = "InvalidInstanceID.Malformed"
# State recorded for an id EC2 rejects as malformed: not an EC2 instance, so nothing to recover.
_NOT_AN_INSTANCE = "not-an-instance"


def is_capacity_shortage(message: str) -> bool:
    """Whether a scaling activity's status message says spot capacity could not be had."""
    lowered = message.lower()
    return any(marker in lowered for marker in _SHORTAGE_MARKERS)


def capacity_failure(
    activities: Iterable[ActivityTypeDef],
    *,
    now: float,
    window_s: float = CAPACITY_FAILURE_WINDOW_S,
) -> str | None:
    """The status message of the newest spot-shortage failure in the window, or None.

    A launch that obtained an instance after the failure clears it: capacity came back.
    """
    newest_first = sorted(activities, key=lambda a: a["StartTime"], reverse=True)
    for activity in newest_first:
        if now - activity["StartTime"].timestamp() > window_s:
            break
        status = activity["StatusCode"]
        description = activity.get("Description", "")
        if status in _LAUNCHED and description.lower().startswith("launching"):
            return None
        message = activity.get("StatusMessage") or description
        if status in _FAILED and is_capacity_shortage(message):
            return message
    return None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retryable(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return _code(exc) in _RETRYABLE_CODES or status >= 500 or "rate exceeded" in message.lower()


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class AsgCapacityProvider:
    """The worker groups of one environment, read and changed through the Auto Scaling API."""

    def __init__(
        self,
        client: AutoScalingClient,
        env: str,
        *,
        ec2: EC2Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 5,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """`client` is an `autoscaling` client, `ec2` an EC2 one (needed by `gone` only).

        `sleep`, `clock` and `rand` (the backoff's jitter, in [0, 1)) are for tests.
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.client = client
        self.env = env
        self.ec2 = ec2
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self._rand = rand

    # --- CapacityProvider ------------------------------------------------------------------------

    def read(self) -> dict[str, PoolGroups]:
        """Every pool's spot and on-demand group, by pool name, sorted."""
        by_pool: dict[str, dict[Capacity, AutoScalingGroupTypeDef]] = {}
        for group in self._call(f"DescribeAutoScalingGroups of environment {self.env}", self._list):
            name = group["AutoScalingGroupName"]
            tags = {t.get("Key", ""): t.get("Value", "") for t in group.get("Tags", [])}
            # The server-side filter already chose the environment; checking again keeps an
            # endpoint that ignores filters (some AWS look-alikes) from mixing environments in.
            if tags.get(TAG_ENV) != self.env or tags.get(TAG_ROLE) != ROLE_WORKER:
                continue
            pool = tags.get(TAG_POOL, "")
            capacity = _CAPACITIES.get(tags.get(TAG_CAPACITY, ""))
            if not pool or capacity is None:
                log.warning(
                    "group %s: worker group without a valid %s and %s tag, ignored",
                    name,
                    TAG_POOL,
                    TAG_CAPACITY,
                )
                continue
            slots = by_pool.setdefault(pool, {})
            if capacity in slots:
                raise CapacityUnavailable(
                    f"pool {pool}: two {capacity.value} groups, "
                    f"{slots[capacity]['AutoScalingGroupName']} and {name}"
                )
            slots[capacity] = group

        pools: dict[str, PoolGroups] = {}
        for pool, slots in sorted(by_pool.items()):
            for capacity in Capacity:
                if capacity not in slots:
                    raise CapacityUnavailable(
                        f"pool {pool}: no {capacity.value} group in environment {self.env} "
                        f"(tagged {TAG_POOL}={pool}, {TAG_CAPACITY}={capacity.value})"
                    )
            spot = slots[Capacity.SPOT]
            pools[pool] = PoolGroups(
                spot=_state(spot, Capacity.SPOT, self._capacity_failure(spot)),
                on_demand=_state(slots[Capacity.ON_DEMAND], Capacity.ON_DEMAND, None),
            )
        return pools

    def set_desired(self, group: GroupState, desired: int) -> None:
        """Set a group's desired capacity; no call when it already has that value."""
        if desired == group.desired:
            return
        self._call(
            f"SetDesiredCapacity of group {group.name} to {desired}",
            lambda: self.client.set_desired_capacity(
                AutoScalingGroupName=group.name, DesiredCapacity=desired, HonorCooldown=False
            ),
        )
        log.info("group %s: desired %d → %d", group.name, group.desired, desired)

    def terminate(self, instance_id: str) -> None:
        """Terminate one instance and lower its group's desired capacity by one.

        An instance that already left its group, or is terminating, is logged and skipped.
        """

        def attempt() -> bool:
            try:
                self.client.terminate_instance_in_auto_scaling_group(
                    InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
                )
            except ClientError as exc:
                message = str(exc.response.get("Error", {}).get("Message", "")).lower()
                if _code(exc) == "ValidationError" and any(m in message for m in _ALREADY_LEAVING):
                    log.info(
                        "instance %s not terminated, already leaving its group: %s",
                        instance_id,
                        exc,
                    )
                    return False
                raise
            return True

        if self._call(f"TerminateInstanceInAutoScalingGroup of instance {instance_id}", attempt):
            log.info("instance %s: terminating, desired capacity lowered by one", instance_id)

    def gone(self, instance_ids: Collection[str]) -> set[str]:
        """Which instances are shutting down, terminated or unknown to EC2.

        Detached but running (or stopped) instances are not gone: their workers may go on.
        """
        ids = sorted(set(instance_ids))
        if not ids:
            return set()
        if self.ec2 is None:
            raise CapacityUnavailable("DescribeInstances: this provider was given no EC2 client")
        states: dict[str, str] = {}
        for batch in _batches(ids, _EC2_BATCH):
            states.update(self._states(self.ec2, batch))
        for instance_id in ids:
            if states.get(instance_id) == _NOT_AN_INSTANCE:
                log.warning("%s is not an EC2 instance id: not judged gone", instance_id)
        # EC2 forgets a terminated instance about an hour after it ends: unknown ids are gone too.
        return {i for i in ids if i not in states or states[i] in _GONE_STATES}

    # --- helpers ---------------------------------------------------------------------------------

    def _list(self) -> list[AutoScalingGroupTypeDef]:
        paginator = self.client.get_paginator("describe_auto_scaling_groups")
        pages = paginator.paginate(Filters=[{"Name": f"tag:{TAG_ENV}", "Values": [self.env]}])
        return [group for page in pages for group in page["AutoScalingGroups"]]

    def _capacity_failure(self, group: AutoScalingGroupTypeDef) -> str | None:
        name = group["AutoScalingGroupName"]
        activities = self._call(
            f"DescribeScalingActivities of group {name}",
            lambda: self.client.describe_scaling_activities(
                AutoScalingGroupName=name, MaxRecords=ACTIVITY_RECORDS
            )["Activities"],
        )
        return capacity_failure(activities, now=self._clock())

    def _states(self, ec2: EC2Client, ids: Sequence[str]) -> dict[str, str]:
        """State name by instance id; ids EC2 does not know are left out."""

        def attempt() -> dict[str, str] | None:
            try:
                pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=list(ids))
                return {
                    instance["InstanceId"]: instance["State"]["Name"]
                    for page in pages
                    for reservation in page["Reservations"]
                    for instance in reservation["Instances"]
                }
            except ClientError as exc:
                # One unknown or malformed id fails the whole call: sort them out one by one.
                if _code(exc) == _NOT_FOUND:
                    return None
                if _code(exc) == _MALFORMED and len(ids) == 1:
                    return {ids[0]: _NOT_AN_INSTANCE}
                if _code(exc) == _MALFORMED:
                    return None
                raise

        found = self._call(
            f"DescribeInstances of {', '.join(ids[:3])}{'…' if len(ids) > 3 else ''}", attempt
        )
        if found is not None:
            return found
        if len(ids) == 1:
            return {}
        states: dict[str, str] = {}
        for instance_id in ids:
            states.update(self._states(ec2, [instance_id]))
        return states

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """`call()`, retried with backoff on throttles and contention; else CapacityUnavailable."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return call()
            except ClientError as exc:
                error = exc.response.get("Error", {})
                detail = f"{_code(exc) or 'error'}: {_one_line(str(error.get('Message', '')))}"
                if not _retryable(exc):
                    raise CapacityUnavailable(f"{what}: {detail}") from exc
                if attempt == self.max_attempts:
                    raise CapacityUnavailable(
                        f"{what}: {detail} (gave up after {attempt} attempts)"
                    ) from exc
                delay = full_jitter(attempt, rand=self._rand)
                log.info("%s: %s; retrying in %.2fs", what, detail, delay)
                self._sleep(delay)
            except BotoCoreError as exc:
                raise CapacityUnavailable(f"{what}: {_one_line(str(exc))}") from exc
        raise AssertionError("unreachable: the last attempt returns or raises")


def _state(group: AutoScalingGroupTypeDef, capacity: Capacity, failure: str | None) -> GroupState:
    return GroupState(
        name=group["AutoScalingGroupName"],
        capacity=capacity,
        desired=group["DesiredCapacity"],
        min_size=group["MinSize"],
        max_size=group["MaxSize"],
        instances=tuple(
            Instance(
                id=i["InstanceId"],
                lifecycle=lifecycle_of(i["LifecycleState"]),
                instance_type=i.get("InstanceType", ""),
            )
            for i in sorted(group.get("Instances", []), key=lambda i: i["InstanceId"])
        ),
        capacity_failure=failure,
    )
