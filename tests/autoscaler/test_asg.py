"""AsgCapacityProvider: against moto for what it emulates, with botocore's Stubber for the rest
(throttles, contention, spot-capacity failures, which moto never produces)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from autoscaler.asg import AsgCapacityProvider, capacity_failure, is_capacity_shortage
from autoscaler.backoff import full_jitter
from autoscaler.errors import CapacityUnavailable
from autoscaler.model import Capacity, GroupState, Lifecycle
from infra.blueprints.common import ROLE_AUTOSCALER, ROLE_WORKER
from infra.blueprints.pool import group_tags
from tests.redis_server import free_port

REGION = "us-east-1"
ENV = "dev"
NOW = 1_800_000_000.0
# One attempt inside botocore, so the provider's own backoff is what these tests observe.
NO_BOTOCORE_RETRIES = Config(retries={"mode": "standard", "max_attempts": 1})


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    # In-process moto only intercepts AWS's own endpoints, not the moto server's.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


# --- against moto ---------------------------------------------------------------------------------


@dataclass
class Cloud:
    autoscaling: Any
    ec2: Any
    subnet: str

    def group(
        self,
        name: str,
        *,
        pool: str,
        capacity: Capacity,
        desired: int,
        env: str = ENV,
        role: str = ROLE_WORKER,
        max_size: int = 10,
    ) -> None:
        """A group tagged the way `infra.blueprints.pool` tags it."""
        tags = [
            {**tag, "ResourceId": name, "ResourceType": "auto-scaling-group"}
            for tag in group_tags(env, pool, role, capacity)
        ]
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            MinSize=0,
            MaxSize=max_size,
            DesiredCapacity=desired,
            LaunchTemplate={"LaunchTemplateName": "fleetkit-workers", "Version": "$Latest"},
            VPCZoneIdentifier=self.subnet,
            Tags=tags,
        )

    def describe(self, name: str) -> dict[str, Any]:
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return dict(groups["AutoScalingGroups"][0])

    def instance_ids(self, name: str) -> set[str]:
        return {i["InstanceId"] for i in self.describe(name)["Instances"]}

    def provider(self) -> AsgCapacityProvider:
        return AsgCapacityProvider(self.autoscaling, ENV, ec2=self.ec2, sleep=_no_sleep)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"moto should not need a retry (asked to sleep {seconds}s)")


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    with mock_aws():
        autoscaling = boto3.client("autoscaling", region_name=REGION, config=NO_BOTOCORE_RETRIES)
        ec2 = boto3.client("ec2", region_name=REGION, config=NO_BOTOCORE_RETRIES)
        ec2.create_launch_template(
            LaunchTemplateName="fleetkit-workers",
            LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
        )
        subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        yield Cloud(autoscaling, ec2, subnet)


def count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call the client makes from now on."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"before-call.{client.meta.service_model.endpoint_prefix}.{operation}",
        lambda params, **_: calls.append(params),
    )
    return calls


def test_read_returns_each_pool_of_the_environment_with_its_instances(cloud: Cloud) -> None:
    cloud.group("batch-spot", pool="batch", capacity=Capacity.SPOT, desired=2)
    cloud.group("batch-od", pool="batch", capacity=Capacity.ON_DEMAND, desired=1, max_size=4)
    cloud.group("fast-spot", pool="fast", capacity=Capacity.SPOT, desired=0)
    cloud.group("fast-od", pool="fast", capacity=Capacity.ON_DEMAND, desired=0)
    # Neither may show up: another environment's pool, and this environment's autoscaler (which
    # would otherwise read as a pool without a spot group and fail the whole read).
    cloud.group("prod-batch-spot", pool="batch", capacity=Capacity.SPOT, desired=1, env="prod")
    cloud.group(
        "dev-autoscaler",
        pool=ROLE_AUTOSCALER,
        role=ROLE_AUTOSCALER,
        capacity=Capacity.ON_DEMAND,
        desired=1,
    )
    listings = count_calls(cloud.autoscaling, "DescribeAutoScalingGroups")

    pools = cloud.provider().read()

    assert sorted(pools) == ["batch", "fast"]
    assert len(listings) == 1
    batch = pools["batch"]
    assert (batch.spot.name, batch.spot.capacity) == ("batch-spot", Capacity.SPOT)
    assert (batch.on_demand.name, batch.on_demand.capacity) == ("batch-od", Capacity.ON_DEMAND)
    assert (batch.spot.desired, batch.spot.min_size, batch.spot.max_size) == (2, 0, 10)
    assert (batch.on_demand.desired, batch.on_demand.max_size) == (1, 4)
    assert {i.id for i in batch.spot.instances} == cloud.instance_ids("batch-spot")
    assert {i.id for i in batch.on_demand.instances} == cloud.instance_ids("batch-od")
    assert len(batch.instance_ids) == 3
    assert all(
        i.lifecycle is Lifecycle.IN_SERVICE and i.instance_type == "t3.micro"
        for i in batch.spot.instances + batch.on_demand.instances
    )
    assert batch.spot.capacity_failure is None
    assert pools["fast"].spot.instances == ()


def test_set_desired_changes_capacity_and_skips_the_call_when_unchanged(cloud: Cloud) -> None:
    cloud.group("batch-spot", pool="batch", capacity=Capacity.SPOT, desired=1)
    cloud.group("batch-od", pool="batch", capacity=Capacity.ON_DEMAND, desired=0)
    provider = cloud.provider()
    spot = provider.read()["batch"].spot
    calls = count_calls(cloud.autoscaling, "SetDesiredCapacity")

    provider.set_desired(spot, 1)
    assert calls == []

    provider.set_desired(spot, 3)
    assert len(calls) == 1
    assert cloud.describe("batch-spot")["DesiredCapacity"] == 3
    assert len(cloud.instance_ids("batch-spot")) == 3


def test_terminate_removes_exactly_the_chosen_instance_and_lowers_desired(cloud: Cloud) -> None:
    cloud.group("batch-spot", pool="batch", capacity=Capacity.SPOT, desired=3)
    cloud.group("batch-od", pool="batch", capacity=Capacity.ON_DEMAND, desired=0)
    before = cloud.instance_ids("batch-spot")
    victim = sorted(before)[1]

    cloud.provider().terminate(victim)

    assert cloud.describe("batch-spot")["DesiredCapacity"] == 2
    assert cloud.instance_ids("batch-spot") == before - {victim}


def test_gone_reports_terminated_and_unknown_instances_not_running_ones(cloud: Cloud) -> None:
    cloud.group("batch-spot", pool="batch", capacity=Capacity.SPOT, desired=3)
    terminated, detached, in_group = sorted(cloud.instance_ids("batch-spot"))
    provider = cloud.provider()
    provider.terminate(terminated)
    cloud.autoscaling.detach_instances(
        InstanceIds=[detached],
        AutoScalingGroupName="batch-spot",
        ShouldDecrementDesiredCapacity=True,
    )
    never_existed = "i-0123456789abcdef0"

    gone = provider.gone([terminated, detached, in_group, never_existed])

    assert gone == {terminated, never_existed}
    assert provider.gone([]) == set()


# --- retries, with Stubber -----------------------------------------------------------------------


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION, config=NO_BOTOCORE_RETRIES)
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


SPOT = GroupState("batch-spot", Capacity.SPOT, desired=1, min_size=0, max_size=10)
SET_SPOT_TO_4 = {"AutoScalingGroupName": "batch-spot", "DesiredCapacity": 4, "HonorCooldown": False}


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        ("Throttling", "Rate exceeded", 400),
        ("ScalingActivityInProgress", "Scaling activity is in progress", 400),
        ("ResourceContention", "You already have a pending update", 500),
        ("InternalFailure", "An internal error occurred", 503),
    ],
    ids=["throttling", "scaling-activity-in-progress", "resource-contention", "5xx"],
)
def test_transient_errors_are_retried_with_growing_jittered_sleeps(
    code: str, message: str, status: int
) -> None:
    client, stubber = stubbed("autoscaling")
    for _ in range(2):
        stubber.add_client_error("set_desired_capacity", code, message, status, SET_SPOT_TO_4)
    stubber.add_response("set_desired_capacity", {}, SET_SPOT_TO_4)
    sleeps: list[float] = []
    # rand: the fraction of the backoff bound each sleep takes (1.0: the whole bound).
    provider = AsgCapacityProvider(client, ENV, sleep=sleeps.append, rand=lambda: 0.5)

    provider.set_desired(SPOT, 4)

    stubber.assert_no_pending_responses()
    assert sleeps == [0.25, 0.5]


def test_backoff_is_capped_and_gives_up_after_max_attempts() -> None:
    client, stubber = stubbed("autoscaling")
    for _ in range(8):
        stubber.add_client_error(
            "set_desired_capacity", "InternalFailure", "internal\nerror", 500, SET_SPOT_TO_4
        )
    sleeps: list[float] = []
    provider = AsgCapacityProvider(
        client, ENV, sleep=sleeps.append, max_attempts=8, rand=lambda: 1.0
    )

    with pytest.raises(CapacityUnavailable) as caught:
        provider.set_desired(SPOT, 4)

    stubber.assert_no_pending_responses()
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    message = str(caught.value)
    assert "\n" not in message
    for part in ("SetDesiredCapacity", "batch-spot", "InternalFailure", "after 8 attempts"):
        assert part in message


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDenied", 403), ("ValidationError", 400)],
    ids=["access-denied", "validation-error"],
)
def test_other_errors_fail_at_once_naming_call_group_and_code(code: str, status: int) -> None:
    client, stubber = stubbed("autoscaling")
    stubber.add_client_error("set_desired_capacity", code, "no", status, SET_SPOT_TO_4)
    sleeps: list[float] = []
    provider = AsgCapacityProvider(client, ENV, sleep=sleeps.append)

    with pytest.raises(
        CapacityUnavailable, match=f"SetDesiredCapacity of group batch-spot.*{code}"
    ):
        provider.set_desired(SPOT, 4)
    assert sleeps == []


def test_an_unreachable_endpoint_is_capacity_unavailable() -> None:
    client = boto3.client(
        "autoscaling",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1),
    )
    provider = AsgCapacityProvider(client, ENV, sleep=_no_sleep)

    with pytest.raises(
        CapacityUnavailable, match=f"DescribeAutoScalingGroups of environment {ENV}"
    ):
        provider.read()


@pytest.mark.parametrize(
    ("retry", "fraction", "expected"),
    [
        (1, 1.0, 0.5),
        (2, 1.0, 1.0),
        (3, 0.5, 1.0),
        (5, 1.0, 8.0),
        (6, 1.0, 10.0),
        (1000, 1.0, 10.0),
        (4, 0.0, 0.0),
    ],
    ids=["first", "doubles", "jittered", "fifth", "capped", "no-overflow", "zero-draw"],
)
def test_full_jitter_bound(retry: int, fraction: float, expected: float) -> None:
    assert full_jitter(retry, rand=lambda: fraction) == expected


def test_full_jitter_draws_spread_over_the_bound() -> None:
    rng = random.Random(7)
    draws = [full_jitter(3, rand=rng.random) for _ in range(200)]
    assert all(0.0 <= d <= 2.0 for d in draws)
    assert min(draws) < 0.5 < 1.5 < max(draws)


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


# --- terminate and gone, with Stubber ---------------------------------------------------------


def stubbed_terminate_error(message: str) -> AsgCapacityProvider:
    client, stubber = stubbed("autoscaling")
    stubber.add_client_error(
        "terminate_instance_in_auto_scaling_group",
        "ValidationError",
        message,
        400,
        {"InstanceId": "i-1", "ShouldDecrementDesiredCapacity": True},
    )
    return AsgCapacityProvider(client, ENV, sleep=_no_sleep)


@pytest.mark.parametrize(
    "message",
    [
        "Instance Id not found - No managed instance found for instance ID: i-1",
        "The instance i-1 is not in InService or EnteringStandby or Standby.",
    ],
    ids=["not-found", "already-terminating"],
)
def test_terminate_tolerates_an_instance_that_already_left(message: str) -> None:
    stubbed_terminate_error(message).terminate("i-1")  # no exception


def test_terminate_reports_any_other_refusal() -> None:
    provider = stubbed_terminate_error(
        "Currently, desiredSize equals minSize (1). Terminating instance without replacement "
        "will violate group's min size constraint."
    )
    with pytest.raises(CapacityUnavailable, match=r"TerminateInstanceInAutoScalingGroup.*i-1"):
        provider.terminate("i-1")


def reservations(*states: tuple[str, str]) -> dict[str, Any]:
    return {
        "Reservations": [
            {"Instances": [{"InstanceId": i, "State": {"Name": s, "Code": 0}} for i, s in states]}
        ]
    }


def test_gone_tells_malformed_ids_apart_from_unknown_ones() -> None:
    ec2, stubber = stubbed("ec2")
    ids = ["i-00000000000000001", "i-00000000000000002", "worker-host"]
    stubber.add_client_error(
        "describe_instances", "InvalidInstanceID.Malformed", "Invalid id", 400, {"InstanceIds": ids}
    )
    stubber.add_response(
        "describe_instances",
        reservations((ids[0], "shutting-down")),
        {"InstanceIds": [ids[0]]},
    )
    stubber.add_client_error(
        "describe_instances", "InvalidInstanceID.NotFound", "gone", 400, {"InstanceIds": [ids[1]]}
    )
    stubber.add_client_error(
        "describe_instances",
        "InvalidInstanceID.Malformed",
        "Invalid id",
        400,
        {"InstanceIds": [ids[2]]},
    )
    provider = AsgCapacityProvider(boto3.client("autoscaling"), ENV, ec2=ec2, sleep=_no_sleep)

    assert provider.gone(ids) == {ids[0], ids[1]}
    stubber.assert_no_pending_responses()


def test_gone_asks_about_at_most_1000_instances_a_call() -> None:
    ec2, stubber = stubbed("ec2")
    ids = [f"i-{n:017x}" for n in range(1001)]
    stubber.add_response(
        "describe_instances",
        reservations(*((i, "running") for i in ids[:1000])),
        {"InstanceIds": ids[:1000]},
    )
    stubber.add_response(
        "describe_instances", reservations((ids[1000], "terminated")), {"InstanceIds": ids[1000:]}
    )
    provider = AsgCapacityProvider(boto3.client("autoscaling"), ENV, ec2=ec2, sleep=_no_sleep)

    assert provider.gone(ids) == {ids[1000]}
    stubber.assert_no_pending_responses()
