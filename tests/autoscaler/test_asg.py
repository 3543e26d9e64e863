"""AsgCapacityProvider: read, set desired, terminate and gone, against moto for what it emulates
and botocore's Stubber for the refusals moto never produces. Retries: test_asg_retries; spot
capacity failures in the group listing: test_asg_capacity_failure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from fleetkit.autoscaler.asg import AsgCapacityProvider
from fleetkit.autoscaler.errors import CapacityUnavailable
from fleetkit.autoscaler.model import Capacity, Lifecycle
from fleetkit.infra.blueprints.common import ROLE_AUTOSCALER, ROLE_WORKER
from fleetkit.infra.blueprints.pool import group_tags
from tests.autoscaler.asg_stubs import ENV, NO_BOTOCORE_RETRIES, REGION, stubbed
from tests.autoscaler.asg_stubs import no_sleep as _no_sleep

pytestmark = pytest.mark.usefixtures("offline_aws")


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


# --- terminate and gone, with Stubber ---------------------------------------------------------


def stubbed_terminate_error(message: str) -> tuple[AsgCapacityProvider, Stubber]:
    client, stubber = stubbed("autoscaling")
    stubber.add_client_error(
        "terminate_instance_in_auto_scaling_group",
        "ValidationError",
        message,
        400,
        {"InstanceId": "i-1", "ShouldDecrementDesiredCapacity": True},
    )
    return AsgCapacityProvider(client, ENV, sleep=_no_sleep), stubber


@pytest.mark.parametrize(
    "message",
    [
        "Instance Id not found - No managed instance found for instance ID: i-1",
        "The instance i-1 is not in InService or EnteringStandby or Standby.",
    ],
    ids=["not-found", "already-terminating"],
)
def test_terminate_tolerates_an_instance_that_already_left(
    message: str, caplog: pytest.LogCaptureFixture
) -> None:
    provider, stubber = stubbed_terminate_error(message)
    caplog.set_level(logging.INFO, logger="fleetkit.autoscaler.asg")

    provider.terminate("i-1")  # no exception: the instance is on its way out anyway

    stubber.assert_no_pending_responses()  # the call was made, with these arguments
    said = [r.getMessage() for r in caplog.records if r.name == "fleetkit.autoscaler.asg"]
    assert len(said) == 1, said
    assert said[0].startswith("instance i-1 not terminated, already leaving its group: ")
    assert message in said[0]


def test_terminate_reports_any_other_refusal() -> None:
    provider, stubber = stubbed_terminate_error(
        "Currently, desiredSize equals minSize (1). Terminating instance without replacement "
        "will violate group's min size constraint."
    )
    with pytest.raises(CapacityUnavailable, match=r"TerminateInstanceInAutoScalingGroup.*i-1"):
        provider.terminate("i-1")
    stubber.assert_no_pending_responses()


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
