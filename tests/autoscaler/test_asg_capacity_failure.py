"""Reading the groups with botocore's Stubber: spot capacity failures from scaling activities,
which moto never produces, and an environment whose groups are not one of each kind per pool.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fleetkit.autoscaler.asg import AsgCapacityProvider, capacity_failure, is_capacity_shortage
from fleetkit.autoscaler.errors import CapacityUnavailable
from fleetkit.autoscaler.model import Capacity, Lifecycle
from fleetkit.infra.blueprints.common import ROLE_WORKER
from fleetkit.infra.blueprints.pool import group_tags
from tests.autoscaler.asg_stubs import ENV, NOW, stubbed
from tests.autoscaler.asg_stubs import no_sleep as _no_sleep

pytestmark = pytest.mark.usefixtures("offline_aws")


# --- reading groups, with Stubber ---------------------------------------------------------------


def group(name: str, pool: str, capacity: Capacity, *, env: str = ENV) -> dict[str, Any]:
    return {
        "AutoScalingGroupName": name,
        "MinSize": 0,
        "MaxSize": 10,
        "DesiredCapacity": 2,
        "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"],
        "HealthCheckType": "EC2",
        "CreatedTime": datetime(2026, 1, 1, tzinfo=UTC),
        "Instances": [
            {
                "InstanceId": f"i-{name.replace('-', '')}{n}",
                "AvailabilityZone": "us-east-1a",
                "LifecycleState": state,
                "HealthStatus": "Healthy",
                "ProtectedFromScaleIn": False,
                "InstanceType": "m5.large",
            }
            for n, state in enumerate(["InService", "Pending:Wait"])
        ],
        "Tags": [
            {"ResourceId": name, "ResourceType": "auto-scaling-group", **tag}
            for tag in group_tags(env, pool, ROLE_WORKER, capacity)
        ],
    }


LISTING = {"Filters": [{"Name": "tag:fleetkit:env", "Values": [ENV]}]}


def activity(
    status: str, message: str = "", *, ago_s: float = 60.0, launch: bool = True
) -> dict[str, Any]:
    start = datetime.fromtimestamp(NOW - ago_s, UTC)
    description = "Launching a new EC2 instance" if launch else "Terminating EC2 instance: i-1"
    return {
        "ActivityId": f"a-{status}-{ago_s}",
        "AutoScalingGroupName": "batch-spot",
        "Cause": "a user request explicitly set group desired capacity",
        "StartTime": start,
        "EndTime": start,
        "StatusCode": status,
        "Description": description,
        **({"StatusMessage": message} if message else {}),
    }


SHORTAGE = (
    "Could not launch Spot Instances. InsufficientInstanceCapacity - There is no Spot capacity "
    "available that matches your request. Launching EC2 instance failed."
)


def test_read_reports_a_spot_capacity_failure_on_the_spot_group_only() -> None:
    client, stubber = stubbed("autoscaling")
    stubber.add_response(
        "describe_auto_scaling_groups",
        {
            "AutoScalingGroups": [
                group("batch-spot", "batch", Capacity.SPOT),
                group("batch-od", "batch", Capacity.ON_DEMAND),
            ]
        },
        LISTING,
    )
    stubber.add_response(
        "describe_scaling_activities",
        {"Activities": [activity("Failed", SHORTAGE, ago_s=30), activity("Successful", ago_s=900)]},
        {"AutoScalingGroupName": "batch-spot", "MaxRecords": 20},
    )
    provider = AsgCapacityProvider(client, ENV, sleep=_no_sleep, clock=lambda: NOW)

    pools = provider.read()

    stubber.assert_no_pending_responses()
    batch = pools["batch"]
    assert batch.spot.capacity_failure == SHORTAGE
    assert batch.on_demand.capacity_failure is None
    assert [i.lifecycle for i in batch.spot.instances] == [Lifecycle.IN_SERVICE, Lifecycle.PENDING]
    assert batch.spot.instances[0].instance_type == "m5.large"


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ([group("batch-spot", "batch", Capacity.SPOT)], r"pool batch: no on-demand group"),
        ([group("batch-od", "batch", Capacity.ON_DEMAND)], r"pool batch: no spot group"),
        (
            [
                group("batch-spot", "batch", Capacity.SPOT),
                group("batch-spot-2", "batch", Capacity.SPOT),
            ],
            r"pool batch: two spot groups, batch-spot and batch-spot-2",
        ),
    ],
    ids=["no-on-demand", "no-spot", "two-spot"],
)
def test_a_pool_without_exactly_one_group_of_each_kind_is_unreadable(
    groups: list[dict[str, Any]], expected: str
) -> None:
    client, stubber = stubbed("autoscaling")
    stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": groups}, LISTING)
    provider = AsgCapacityProvider(client, ENV, sleep=_no_sleep)

    with pytest.raises(CapacityUnavailable, match=expected):
        provider.read()


@pytest.mark.parametrize(
    ("activities", "expected"),
    [
        ([], None),
        ([activity("Failed", SHORTAGE)], SHORTAGE),
        ([activity("Cancelled", SHORTAGE)], SHORTAGE),
        ([activity("Successful", ago_s=30), activity("Failed", SHORTAGE, ago_s=90)], None),
        ([activity("Failed", SHORTAGE, ago_s=30), activity("Successful", ago_s=90)], SHORTAGE),
        ([activity("MidLifecycleAction", ago_s=30), activity("Failed", SHORTAGE)], None),
        ([activity("Successful", launch=False, ago_s=30), activity("Failed", SHORTAGE)], SHORTAGE),
        ([activity("Failed", SHORTAGE, ago_s=601)], None),
        ([activity("Failed", "Invalid IamInstanceProfile. Launching EC2 instance failed.")], None),
        (
            [activity("Failed", "SpotMaxPriceTooLow", ago_s=90), activity("Failed", SHORTAGE)],
            SHORTAGE,
        ),
    ],
    ids=[
        "no-activity",
        "failed",
        "cancelled",
        "cleared-by-later-success",
        "success-before-failure",
        "cleared-by-launched-instance",
        "termination-does-not-clear",
        "too-old",
        "not-a-capacity-failure",
        "newest-failure-wins",
    ],
)
def test_capacity_failure(activities: list[dict[str, Any]], expected: str | None) -> None:
    assert capacity_failure(activities, now=NOW) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "shortage"),
    [
        (SHORTAGE, True),
        ("We currently do not have sufficient m5.large capacity in the Availability Zone", True),
        ("Could not launch Spot Instances. capacity-not-available - ...", True),
        ("UnfulfillableCapacity - Unable to fulfill capacity due to your request", True),
        ("MaxSpotInstanceCountExceeded - Max spot instance count exceeded", True),
        ("Could not launch Spot Instances. SpotMaxPriceTooLow - Your bid price is too low", True),
        ("insufficient capacity in us-east-1a", True),
        ("Invalid IamInstanceProfile. Launching EC2 instance failed.", False),
        ("The requested configuration is currently not supported.", False),
        ("", False),
    ],
    ids=[
        "insufficient-instance-capacity",
        "not-sufficient",
        "capacity-not-available",
        "unfulfillable",
        "max-spot-count",
        "max-price",
        "lower-case",
        "iam",
        "unsupported",
        "empty",
    ],
)
def test_is_capacity_shortage(message: str, shortage: bool) -> None:
    assert is_capacity_shortage(message) is shortage
