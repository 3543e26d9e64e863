"""End to end: the real `infra` CLI in a subprocess against the moto HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from fleetkit.core.environment import ENVIRONMENTS_DIR

pytestmark = pytest.mark.e2e

INFRA = [sys.executable, "-m", "fleetkit.infra"]


def infra(
    *args: str, env: dict[str, str], input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INFRA, *args], env=env, input=input, capture_output=True, text=True, timeout=300
    )


def local_copy(tmp_path: Path, **replacements: str) -> Path:
    """The shipped `local` environment under the same name, with some text replaced."""
    text = 'name = "local"\n' + (ENVIRONMENTS_DIR / "local.toml").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "local.toml"
    path.write_text(text)
    return path


def fleet_groups(stack: str) -> dict[str, dict[str, Any]]:
    cf = boto3.client("cloudformation", region_name="us-east-1")
    names = [
        r["PhysicalResourceId"]
        for r in cf.list_stack_resources(StackName=stack)["StackResourceSummaries"]
        if r["ResourceType"] == "AWS::AutoScaling::AutoScalingGroup"
    ]
    asg = boto3.client("autoscaling", region_name="us-east-1")
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=names)["AutoScalingGroups"]
    return {
        "/".join((tags["fleetkit:pool"], tags["fleetkit:capacity"])): {**g, "tags": tags}
        for g in groups
        for tags in [{t["Key"]: t["Value"] for t in g["Tags"]}]
    }


def test_deploy_redeploy_update_destroy(aws: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    created = infra("deploy", "--env", "local", "--yes", env=cli_env)
    assert created.returncode == 0, created.stderr
    assert "CREATE_COMPLETE" in created.stdout
    cf = boto3.client("cloudformation", region_name="us-east-1")
    assert cf.describe_stacks(StackName="fleetkit-local")["Stacks"][0]["StackStatus"] == (
        "CREATE_COMPLETE"
    )

    groups = fleet_groups("fleetkit-local")
    assert set(groups) == {"workers/spot", "workers/on-demand", "autoscaler/on-demand"}
    for key, group in groups.items():
        assert group["tags"]["fleetkit:env"] == "local", key
        assert all(
            t["PropagateAtLaunch"] for t in group["Tags"] if t["Key"].startswith("fleetkit:")
        )
    assert groups["workers/spot"]["MaxSize"] == 20
    assert groups["workers/on-demand"]["MaxSize"] == 5
    assert groups["workers/on-demand"]["DesiredCapacity"] == 0
    assert groups["autoscaler/on-demand"]["DesiredCapacity"] == 1

    # The autoscaler's instance really runs, and carries the tags too.
    ec2 = boto3.client("ec2", region_name="us-east-1")
    reservations = ec2.describe_instances(
        Filters=[{"Name": "tag:fleetkit:env", "Values": ["local"]}]
    )["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 1
    tags = {t["Key"]: t["Value"] for t in instances[0]["Tags"]}
    assert tags["fleetkit:pool"] == "autoscaler"
    assert tags["fleetkit:capacity"] == "on-demand"

    again = infra("deploy", "--env", "local", "--yes", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stdout
    assert "UPDATE" not in again.stdout

    changed = local_copy(tmp_path, **{"max_size = 20": "max_size = 30"})
    preview = infra("diff", "--env", str(changed), "--json", env=cli_env)
    assert preview.returncode == 0, preview.stderr
    changes = json.loads(preview.stdout)["changes"]
    assert {c["logical_id"] for c in changes} == {"WorkersSpotGroup"}
    assert changes[0]["action"] == "Modify"
    # diff deletes its change set: nothing is left waiting to be executed.
    pending = [
        c
        for c in cf.list_change_sets(StackName="fleetkit-local")["Summaries"]
        if c.get("ExecutionStatus") == "AVAILABLE"
    ]
    assert pending == []

    updated = infra("deploy", "--env", str(changed), "--yes", env=cli_env)
    assert updated.returncode == 0, updated.stderr
    assert "UPDATE_COMPLETE" in updated.stdout
    assert fleet_groups("fleetkit-local")["workers/spot"]["MaxSize"] == 30

    status = infra("status", "--env", str(changed), "--json", env=cli_env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["status"] == "UPDATE_COMPLETE"
    spot = next(g for g in report["groups"] if g["capacity"] == "spot")
    assert (spot["pool"], spot["max_size"], spot["desired"]) == ("workers", 30, 0)
    autoscaler = next(g for g in report["groups"] if g["pool"] == "autoscaler")
    assert (autoscaler["desired"], autoscaler["in_service"]) == (1, 1)

    destroyed = infra("destroy", "--env", "local", "--yes", env=cli_env)
    assert destroyed.returncode == 0, destroyed.stderr
    assert "deleted" in destroyed.stdout
    assert [
        s for s in cf.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"
    ] == []
    gone = infra("status", "--env", "local", env=cli_env)
    assert gone.returncode == 3
    assert "not deployed" in gone.stdout


def test_deploy_does_not_reset_live_capacity(
    aws: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert infra("deploy", "--env", "local", "--yes", env=cli_env).returncode == 0
    spot = fleet_groups("fleetkit-local")["workers/spot"]["AutoScalingGroupName"]
    asg = boto3.client("autoscaling", region_name="us-east-1")
    asg.set_desired_capacity(AutoScalingGroupName=spot, DesiredCapacity=7)

    changed = local_copy(tmp_path, **{"max_size = 5": "max_size = 6"})
    assert infra("deploy", "--env", str(changed), "--yes", env=cli_env).returncode == 0
    groups = fleet_groups("fleetkit-local")
    assert groups["workers/on-demand"]["MaxSize"] == 6
    assert groups["workers/spot"]["DesiredCapacity"] == 7


def test_declined_deploy_leaves_nothing(aws: str, cli_env: dict[str, str]) -> None:
    declined = infra("deploy", "--env", "local", env=cli_env, input="n\n")
    assert declined.returncode == 1
    assert "not deployed" in declined.stderr
    cf = boto3.client("cloudformation", region_name="us-east-1")
    live = [s for s in cf.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert live == []


def test_invalid_environment_touches_nothing(
    aws: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    broken = local_copy(tmp_path, **{"min_size = 0": "min_size = 50"})
    result = infra("deploy", "--env", str(broken), "--yes", env=cli_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(broken) in lines[0] and "pools.workers" in lines[0] and "min_size 50" in lines[0]
    cf = boto3.client("cloudformation", region_name="us-east-1")
    assert cf.list_stacks()["StackSummaries"] == []


def test_diff_before_and_after_deploy(aws: str, cli_env: dict[str, str]) -> None:
    first = infra("diff", "--env", "local", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "create (12 changes)" in first.stdout
    assert "WorkersSpotGroup" in first.stdout and "Add" in first.stdout
    cf = boto3.client("cloudformation", region_name="us-east-1")
    # The CREATE change set and its empty REVIEW_IN_PROGRESS stack are both gone again.
    live = [s for s in cf.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert live == []

    assert infra("deploy", "--env", "local", "--yes", env=cli_env).returncode == 0
    again = infra("diff", "--env", "local", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "fleetkit-local: no changes" in again.stdout


def test_aws_profile_is_honoured(aws: str, cli_env: dict[str, str]) -> None:
    result = infra("status", "--env", "local", env={**cli_env, "AWS_PROFILE": "no-such-profile"})
    assert result.returncode == 1
    assert "no-such-profile" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_protection_that_cannot_be_set_after_a_create_says_what_is_done(
    aws: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # moto does not implement UpdateTerminationProtection: it answers with an HTML 500 page,
    # which botocore cannot parse. The stack itself is created.
    protected = local_copy(
        tmp_path, **{'region = "us-east-1"': 'region = "us-east-1"\ntermination_protection = true'}
    )
    result = infra("deploy", "--env", str(protected), "--yes", env=cli_env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "infra: error: stack fleetkit-local is CREATE_COMPLETE but termination protection is "
        "NOT on: setting termination protection on fleetkit-local: "
    )
    assert lines[0].endswith(
        "turn it on with: aws cloudformation update-termination-protection "
        "--enable-termination-protection --stack-name fleetkit-local"
    )
    assert "CREATE_COMPLETE" in result.stdout
    cf = boto3.client("cloudformation", region_name="us-east-1")
    assert cf.describe_stacks(StackName="fleetkit-local")["Stacks"][0]["StackStatus"] == (
        "CREATE_COMPLETE"
    )


@pytest.mark.parametrize("command", ["diff", "deploy"])
def test_a_type_the_region_does_not_offer_touches_nothing(
    aws: str, cli_env: dict[str, str], tmp_path: Path, command: str
) -> None:
    # cc2.8xlarge is in botocore's list (validate passes) but moto's us-east-1 does not offer it.
    unoffered = local_copy(tmp_path, **{'"t3a.small"': '"cc2.8xlarge"'})
    assert infra("validate", "--env", str(unoffered), env=cli_env).returncode == 0

    yes = ["--yes"] if command == "deploy" else []
    result = infra(command, "--env", str(unoffered), *yes, env=cli_env)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"infra: error: {unoffered}: pools.workers.instance_types.1: 'cc2.8xlarge' is not "
        "offered in region us-east-1"
    ]
    cf = boto3.client("cloudformation", region_name="us-east-1")
    assert cf.list_stacks()["StackSummaries"] == []


def test_diff_and_deploy_show_what_a_modify_changes(
    aws: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    assert infra("deploy", "--env", "local", "--yes", env=cli_env).returncode == 0
    # moto's change set says "Modify WorkersSpotGroup" and no more: the properties come from
    # the deployed template (GetTemplate) against the new one.
    changed = local_copy(tmp_path, **{"max_size = 20": "max_size = 30"})

    table = infra("diff", "--env", str(changed), env=cli_env)
    assert table.returncode == 0, table.stderr
    assert "fleetkit-local: update (1 change)" in table.stdout
    assert "MaxSize 20 → 30" in table.stdout

    preview = infra("diff", "--env", str(changed), "--json", env=cli_env)
    assert preview.returncode == 0, preview.stderr
    [change] = json.loads(preview.stdout)["changes"]
    assert change == {
        "action": "Modify",
        "logical_id": "WorkersSpotGroup",
        "resource_type": "AWS::AutoScaling::AutoScalingGroup",
        "replacement": "",
        "properties": [{"path": "MaxSize", "before": "20", "after": "30"}],
    }

    declined = infra("deploy", "--env", str(changed), env=cli_env, input="n\n")
    assert declined.returncode == 1
    assert "MaxSize 20 → 30" in declined.stdout and "(1 change)" in declined.stdout
    assert fleet_groups("fleetkit-local")["workers/spot"]["MaxSize"] == 20


def test_diff_and_deploy_warn_of_a_missing_redis_parameter(
    aws: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    name = "/fleetkit/local/redis-url"
    in_ssm = local_copy(
        tmp_path, **{'url = "redis://127.0.0.1:6379/0"': f'ssm_parameter = "{name}"'}
    )
    warning = (
        f"infra: warning: SSM parameter {name} does not exist in us-east-1: instances will not "
        "find the Redis URL; create it: aws ssm put-parameter --region us-east-1 --name "
        f"{name} --type SecureString --value 'redis://HOST:6379/0'"
    )
    # validate stays offline: no AWS call, so no warning.
    offline = infra("validate", "--env", str(in_ssm), env=cli_env)
    assert offline.returncode == 0 and offline.stderr == ""

    for args in (["diff"], ["diff", "--json"], ["deploy", "--yes"]):
        result = infra(*args, "--env", str(in_ssm), env=cli_env)
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [warning], args
    assert json.loads(infra("diff", "--env", str(in_ssm), "--json", env=cli_env).stdout)[
        "warnings"
    ] == [warning.removeprefix("infra: warning: ")]

    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=name, Value="redis://10.0.0.5:6379/0", Type="SecureString"
    )
    again = infra("deploy", "--env", str(in_ssm), "--yes", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert "no changes" in again.stdout
