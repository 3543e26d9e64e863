"""Template building: each pool option shows up where AWS reads it."""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any

import pytest

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints import FleetBlueprint
from tests.infra.helpers import environment, legacy, rendered, resources_of

ASG = "AWS::AutoScaling::AutoScalingGroup"


def group(document: dict[str, Any], logical: str) -> dict[str, Any]:
    props: dict[str, Any] = document["Resources"][logical]["Properties"]
    return props


def tags(props: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in props["Tags"]}


def test_spot_group_is_all_spot_with_diversified_overrides() -> None:
    env = environment()
    spot = group(rendered(env), "WorkersSpotGroup")
    policy = spot["MixedInstancesPolicy"]
    distribution = policy["InstancesDistribution"]
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["OnDemandBaseCapacity"] == 0
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert "SpotMaxPrice" not in distribution
    overrides = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
    assert overrides == env.pools["workers"].instance_types
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"]["Version"] == {
        "Fn::GetAtt": ["WorkersLaunchTemplate", "LatestVersionNumber"]
    }
    assert spot["CapacityRebalance"] is True
    assert (spot["MinSize"], spot["MaxSize"]) == ("0", "500")


def test_on_demand_fallback_group() -> None:
    document = rendered(environment())
    fallback = group(document, "WorkersOnDemandGroup")
    distribution = fallback["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 100
    assert (fallback["MinSize"], fallback["MaxSize"]) == ("0", "100")
    spot = group(document, "WorkersSpotGroup")
    assert (
        fallback["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
        == spot["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    )


def test_no_group_sets_desired_capacity() -> None:
    for env in (environment(), legacy()):
        for name, resource in resources_of(rendered(env), ASG).items():
            assert "DesiredCapacity" not in resource["Properties"], name


@pytest.mark.parametrize("logical", ["WorkersSpotGroup", "WorkersOnDemandGroup"])
def test_lifecycle_hooks_on_both_groups(logical: str) -> None:
    hooks = {
        h["LifecycleTransition"]: h
        for h in group(rendered(environment(drain_timeout_s=420)), logical)[
            "LifecycleHookSpecificationList"
        ]
    }
    launching = hooks["autoscaling:EC2_INSTANCE_LAUNCHING"]
    terminating = hooks["autoscaling:EC2_INSTANCE_TERMINATING"]
    assert (launching["DefaultResult"], launching["HeartbeatTimeout"]) == ("ABANDON", 900)
    assert (terminating["DefaultResult"], terminating["HeartbeatTimeout"]) == ("CONTINUE", 420)


@pytest.mark.parametrize(
    ("logical", "pool", "capacity"),
    [
        ("WorkersSpotGroup", "workers", "spot"),
        ("WorkersOnDemandGroup", "workers", "on-demand"),
        ("AutoscalerGroup", "autoscaler", "on-demand"),
    ],
    ids=["spot", "on-demand", "autoscaler"],
)
def test_group_tags_propagate(logical: str, pool: str, capacity: str) -> None:
    props = group(rendered(environment()), logical)
    assert tags(props) == {
        "fleetkit:env": "staging",
        "fleetkit:pool": pool,
        "fleetkit:capacity": capacity,
        "fleetkit:role": "autoscaler" if pool == "autoscaler" else "worker",
    }
    assert all(t["PropagateAtLaunch"] is True for t in props["Tags"])


def test_autoscaler_group_is_one_on_demand_instance() -> None:
    document = rendered(environment())
    props = group(document, "AutoscalerGroup")
    assert (props["MinSize"], props["MaxSize"]) == ("1", "1")
    assert "MixedInstancesPolicy" not in props
    data = document["Resources"]["AutoscalerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["InstanceType"] == "t3.micro"
    assert "InstanceMarketOptions" not in data


def test_launch_template_imdsv2_encrypted_gp3_pointer_user_data() -> None:
    document = rendered(environment(root_volume_gb=40))
    data = document["Resources"]["WorkersLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpPutResponseHopLimit": 1,
        "HttpTokens": "required",
    }
    ebs = data["BlockDeviceMappings"][0]["Ebs"]
    assert (ebs["VolumeType"], ebs["Encrypted"], ebs["VolumeSize"]) == ("gp3", True, 40)
    assert "InstanceMarketOptions" not in data
    script = data["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    for line in ("FLEETKIT_ENV=staging", "FLEETKIT_POOL=workers", "FLEETKIT_ROLE=worker"):
        assert line in script
    assert "redis" not in script.lower()  # pointers only, never secrets
    assert len(base64.b64encode(script.encode())) < 16_384


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        (
            {"spot": {"allocation_strategy": "capacity-optimized"}},
            "SpotAllocationStrategy",
            "capacity-optimized",
        ),
        ({"spot": {"max_price": "0.042"}}, "SpotMaxPrice", "0.042"),
    ],
    ids=["allocation-strategy", "bid"],
)
def test_spot_settings(changes: dict[str, Any], key: str, expected: str) -> None:
    distribution = group(rendered(environment(**changes)), "WorkersSpotGroup")[
        "MixedInstancesPolicy"
    ]["InstancesDistribution"]
    assert distribution[key] == expected


def test_processes_and_sizes() -> None:
    spot = group(rendered(environment(min_size=3, max_size=42)), "WorkersSpotGroup")
    assert (spot["MinSize"], spot["MaxSize"]) == ("3", "42")


def test_ami_id_vs_ssm_path_parameters() -> None:
    by_path = rendered(environment())["Parameters"]["WorkersImageId"]
    assert by_path["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert by_path["Default"].startswith("/aws/service/ami-amazon-linux-latest/")
    by_id = rendered(environment(ami="ami-0123456789abcdef0"))["Parameters"]["WorkersImageId"]
    assert by_id == {
        "Default": "ami-0123456789abcdef0",
        "Description": "AMI of the workers workers",
        "Type": "AWS::EC2::Image::Id",
    }


def test_legacy_launch_configurations() -> None:
    document = rendered(legacy())
    assert resources_of(document, "AWS::EC2::LaunchTemplate").keys() == {"AutoscalerLaunchTemplate"}
    spot_lc = document["Resources"]["WorkersSpotLaunchConfiguration"]
    on_demand_lc = document["Resources"]["WorkersOnDemandLaunchConfiguration"]
    assert spot_lc["Properties"]["SpotPrice"] == "0.05"
    assert "SpotPrice" not in on_demand_lc["Properties"]
    assert spot_lc["Properties"]["MetadataOptions"]["HttpTokens"] == "required"
    assert spot_lc["Metadata"]["cfn-lint"]["config"]["ignore_checks"] == ["W3697"]
    assert group(document, "WorkersSpotGroup")["LaunchConfigurationName"] == {
        "Ref": "WorkersSpotLaunchConfiguration"
    }


def test_security_group_ingress_only_with_ssh_cidr() -> None:
    closed = rendered(environment())["Resources"]["InstanceSecurityGroup"]["Properties"]
    assert closed["SecurityGroupIngress"] == []
    env = environment()
    raw = env.model_dump(exclude={"source"})
    raw["network"]["ssh_cidr"] = "10.1.0.0/16"
    opened = rendered(Environment.model_validate(raw))["Resources"]["InstanceSecurityGroup"]
    assert opened["Properties"]["SecurityGroupIngress"] == [
        {
            "CidrIp": "10.1.0.0/16",
            "Description": "SSH for fabric-run cookbooks",
            "FromPort": 22,
            "IpProtocol": "tcp",
            "ToPort": 22,
        }
    ]


def test_artifact_bucket_created_or_named() -> None:
    created = rendered(environment())["Resources"]["ArtifactBucket"]
    props = created["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    algorithm = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert algorithm["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert created["DeletionPolicy"] == "Retain"

    raw = environment().model_dump(exclude={"source"})
    raw["artifacts"]["bucket"] = "team-artifacts"
    named = rendered(Environment.model_validate(raw))
    assert "ArtifactBucket" not in named["Resources"]
    assert named["Outputs"]["ArtifactBucketName"]["Value"] == "team-artifacts"


def test_worker_role_least_privilege() -> None:
    document = rendered(environment())
    statements = {
        s["Sid"]: s
        for s in document["Resources"]["WorkersRole"]["Properties"]["Policies"][0][
            "PolicyDocument"
        ]["Statement"]
    }
    lifecycle = statements["OwnLifecycleAndProtection"]
    assert lifecycle["Condition"] == {
        "StringEquals": {
            "autoscaling:ResourceTag/fleetkit:env": "staging",
            "autoscaling:ResourceTag/fleetkit:pool": "workers",
        }
    }
    assert set(lifecycle["Action"]) == {
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "autoscaling:SetInstanceProtection",
    }
    artifacts = statements["ReadOwnArtifacts"]
    assert artifacts["Resource"][0]["Fn::Sub"][0].endswith("/fleetkit/staging/*")
    assert statements["ReadRedisUrl"]["Resource"][0]["Fn::Sub"].endswith(
        ":parameter/fleetkit/staging/redis-url"
    )
    every_action = [a for s in statements.values() for a in s["Action"]]
    assert not any(a.endswith("*") for a in every_action)
    assert "autoscaling:SetDesiredCapacity" not in every_action


def test_autoscaler_role_resizes_only_this_environments_worker_groups() -> None:
    document = rendered(environment())
    statements = {
        s["Sid"]: s
        for s in document["Resources"]["AutoscalerRole"]["Properties"]["Policies"][0][
            "PolicyDocument"
        ]["Statement"]
    }
    resize = statements["ResizeOwnWorkerGroups"]
    assert set(resize["Action"]) == {
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    }
    assert resize["Condition"] == {
        "StringEquals": {
            "autoscaling:ResourceTag/fleetkit:env": "staging",
            "autoscaling:ResourceTag/fleetkit:role": "worker",
        }
    }


def test_outputs() -> None:
    outputs = rendered(environment())["Outputs"]
    assert set(outputs) == {
        "ArtifactBucketName",
        "AutoscalerGroupName",
        "AutoscalerRoleArn",
        "WorkersOnDemandGroupName",
        "WorkersRoleArn",
        "WorkersSpotGroupName",
    }


def test_several_pools_get_their_own_resources() -> None:
    raw = environment().model_dump(exclude={"source"})
    raw["pools"]["batch-high"] = {**raw["pools"]["workers"], "queues": ["high"], "max_size": 7}
    document = rendered(Environment.model_validate(raw))
    assert group(document, "BatchHighSpotGroup")["MaxSize"] == "7"
    assert tags(group(document, "BatchHighOnDemandGroup"))["fleetkit:pool"] == "batch-high"
    assert "BatchHighRoleArn" in document["Outputs"]


def render_in_subprocess(fmt: str, seed: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "fleetkit.infra", "render", "--env", "staging", "--format", fmt],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
    ).stdout


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_rendering_is_deterministic_across_processes(fmt: str) -> None:
    """Same input, same bytes: different hash seeds, different processes."""
    first, second = render_in_subprocess(fmt, "1"), render_in_subprocess(fmt, "2")
    assert first == second
    assert first == FleetBlueprint(environment()).render(fmt)
