"""`autoscaler status` of an environment that is not deployed: "not deployed", exit 3, as
`infra status` says it, against the moto server with no stack (and Redis never looked for).
Status of a deployed fleet: test_e2e.
"""

from __future__ import annotations

import json

import boto3
import pytest
from click.testing import CliRunner
from redis import Redis

from fleetkit.autoscaler.cli import main
from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider, InMemoryQueueDepthSource
from fleetkit.autoscaler.status import fleet_status
from fleetkit.core.tags import Capacity
from fleetkit.infra.blueprints.common import ROLE_WORKER
from fleetkit.infra.blueprints.pool import group_tags
from tests.autoscaler.test_daemon import environment

NOT_DEPLOYED = (
    "autoscaler: error: environment local: not deployed "
    "(no worker groups tagged fleetkit:env=local)"
)


def another_environments_group() -> None:
    """A worker group of environment `prod` in the same account and region."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.create_launch_template(
        LaunchTemplateName="prod-workers",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    name = "fleetkit-prod-workers-spot"
    boto3.client("autoscaling", region_name="us-east-1").create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": "prod-workers", "Version": "$Latest"},
        VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        Tags=[
            {**tag, "ResourceId": name, "ResourceType": "auto-scaling-group"}
            for tag in group_tags("prod", "workers", ROLE_WORKER, Capacity.SPOT)
        ],
    )


@pytest.mark.parametrize("others", [False, True], ids=["empty-account", "another-env-deployed"])
def test_status_of_an_environment_not_deployed_says_so_and_exits_3(
    aws: str, redis_url: str, others: bool
) -> None:
    if others:
        another_environments_group()

    result = CliRunner().invoke(main, ["status", "--env", "local"])

    assert result.exit_code == 3
    assert result.stdout == ""  # no empty table
    assert result.stderr.splitlines() == [NOT_DEPLOYED]


def test_status_json_of_an_environment_not_deployed_says_so_and_exits_3(
    aws: str, redis_url: str
) -> None:
    result = CliRunner().invoke(main, ["status", "--env", "local", "--json"])

    assert result.exit_code == 3
    assert json.loads(result.stdout) == {
        "env": "local",
        "deployed": False,
        "pools": {},
        "errors": [NOT_DEPLOYED.removeprefix("autoscaler: error: ")],
    }
    assert result.stderr == ""


def test_not_deployed_is_said_before_redis_is_looked_for(
    aws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # staging's Redis URL is an SSM parameter, which does not exist in an empty account either.
    monkeypatch.delenv("FLEETKIT_REDIS_URL", raising=False)

    result = CliRunner().invoke(main, ["status", "--env", "staging"])

    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "autoscaler: error: environment staging: not deployed "
        "(no worker groups tagged fleetkit:env=staging)"
    ]


def test_a_pool_missing_from_a_deployed_environment_is_an_error(redis: Redis) -> None:
    env = environment()  # pool `workers`
    fleet = InMemoryCapacityProvider({"other": (20, 8)})  # deployed before `workers` was added

    digest = fleet_status(
        env, connection=redis, source=InMemoryQueueDepthSource(), groups=fleet.read()
    )

    assert digest["errors"] == [
        "pool workers: not deployed (no worker groups tagged fleetkit:pool=workers)"
    ]
    assert digest["pools"]["workers"]["groups"] is None
