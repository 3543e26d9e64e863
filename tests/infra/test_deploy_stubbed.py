"""deploy / destroy and their CLI commands against stubbed CloudFormation and EC2 clients.

moto never rolls a stack back, never fails a change set for "no changes" and ignores
termination protection; here the stubbed clients play AWS's part. Each test lists the calls
AWS would see, in order, and ends with `assert_no_pending_responses`: a call not listed fails
the test, and so does a listed call that was not made.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner
from rich.console import Console

import fleetkit.infra.cli
import fleetkit.infra.deploy
from fleetkit.core.aws import AwsClients
from fleetkit.core.environment import Environment, load_environment
from fleetkit.infra.blueprints import FleetBlueprint
from fleetkit.infra.blueprints.common import TAG_ENV
from fleetkit.infra.cli import main
from fleetkit.infra.deploy import (
    DeployOutcome,
    OperationFailedError,
    deploy,
    destroy,
    stack_parameters,
)
from fleetkit.infra.errors import StackBusyError, StackError, StackProtectedError
from fleetkit.infra.instance_types import instance_type_uses
from fleetkit.infra.network import Network
from fleetkit.infra.stacks import ChangeSetPlan, CloudFormationStacks, StackEvent, StackState

REGION = "us-east-1"
ACCOUNT = "123456789012"
VPC = "vpc-0a1b2c3d"
SUBNETS = ("subnet-0aaa1111", "subnet-0bbb2222")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NO_CHANGES_REASON = (
    "The submitted information didn't contain changes. Submit different information to create "
    "a change set."
)
FAILED_REASON = (
    "Resource handler returned message: \"The instance type 'm7i.large' is not supported in "
    'the requested Availability Zone"'
)


def stack_id(name: str) -> str:
    return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/9d8c7b6a-5e4f-3a2b-1c0d"


def _client(service: str) -> Any:
    return boto3.client(
        service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )


@dataclass
class Cloud:
    """Stubbed CloudFormation and EC2 behind one AwsClients, plus the parameters of each call."""

    clients: AwsClients
    cf: Stubber
    ec2: Stubber
    ssm: Stubber
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def change_set_names(self) -> set[str]:
        return {p["ChangeSetName"] for _, p in self.calls if "ChangeSetName" in p}

    def verify(self) -> None:
        self.cf.assert_no_pending_responses()
        self.ec2.assert_no_pending_responses()
        self.ssm.assert_no_pending_responses()

    # --- what AWS answers -------------------------------------------------------------------

    def stack(self, env: Environment, status: str, *, by: str | None = None, **extra: Any) -> None:
        self.cf.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": env.stack,
                        "StackId": stack_id(env.stack),
                        "CreationTime": T0,
                        "StackStatus": status,
                        **extra,
                    }
                ]
            },
            {"StackName": by or env.stack},
        )

    def no_stack(self, env: Environment, *, by: str | None = None) -> None:
        self.cf.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message=f"Stack with id {by or env.stack} does not exist",
            http_status_code=400,
            expected_params={"StackName": by or env.stack},
        )

    def events(
        self, env: Environment, events: list[dict[str, Any]], *, by: str | None = None
    ) -> None:
        # AWS lists stack events newest first.
        ordered = sorted(events, key=lambda e: e["Timestamp"], reverse=True)
        self.cf.add_response(
            "describe_stack_events", {"StackEvents": ordered}, {"StackName": by or env.stack}
        )

    def network(self, env: Environment) -> None:
        """EC2 before a change set: the region offers env's instance types; the default VPC."""
        names = sorted({u.name for u in instance_type_uses(env)})
        self.ec2.add_response(
            "describe_instance_type_offerings",
            {
                "InstanceTypeOfferings": [
                    {"InstanceType": name, "LocationType": "region", "Location": REGION}
                    for name in names
                ]
            },
            {"LocationType": "region", "Filters": [{"Name": "instance-type", "Values": names}]},
        )
        self.ec2.add_response(
            "describe_vpcs",
            {"Vpcs": [{"VpcId": VPC, "IsDefault": True}]},
            {"Filters": [{"Name": "isDefault", "Values": ["true"]}]},
        )
        self.ec2.add_response(
            "describe_subnets",
            # Unsorted on purpose: the stack gets them sorted.
            {"Subnets": [{"SubnetId": s, "VpcId": VPC} for s in reversed(SUBNETS)]},
            {
                "Filters": [
                    {"Name": "vpc-id", "Values": [VPC]},
                    {"Name": "default-for-az", "Values": ["true"]},
                ]
            },
        )

    def change_set(self, env: Environment, change_type: str, *described: dict[str, Any]) -> None:
        """create_change_set with exactly this env's template, parameters and tags; then each
        describe_change_set answer in turn."""
        self.cf.add_response(
            "create_change_set",
            {
                "Id": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/x/1",
                "StackId": stack_id(env.stack),
            },
            {
                "StackName": env.stack,
                "ChangeSetName": ANY,
                "ChangeSetType": change_type,
                "TemplateBody": FleetBlueprint(env).body(),
                "Parameters": [
                    {"ParameterKey": k, "ParameterValue": v}
                    for k, v in stack_parameters(env, Network(VPC, SUBNETS)).items()
                ],
                "Capabilities": ["CAPABILITY_IAM"],
                "Tags": [{"Key": TAG_ENV, "Value": env.name}],
            },
        )
        # Polls until the change set is ready, then its pages, asked with their property values.
        ready = False
        for answer in described:
            self.cf.add_response(
                "describe_change_set",
                {"StackName": env.stack, **answer},
                {
                    "StackName": env.stack,
                    "ChangeSetName": ANY,
                    **({"IncludePropertyValues": True} if ready else {}),
                },
            )
            ready = ready or answer["Status"] in ("CREATE_COMPLETE", "FAILED")

    def redis_parameter(self, env: Environment, kind: str = "SecureString") -> None:
        """The SSM parameter holding the Redis URL, which prod and staging name, exists."""
        name = env.redis.ssm_parameter
        self.ssm.add_response(
            "get_parameter",
            {"Parameter": {"Name": name, "Type": kind, "Value": "AQICAHh…", "Version": 1}},
            {"Name": name, "WithDecryption": False},
        )

    def deployed_template(self, env: Environment, document: dict[str, Any]) -> None:
        """GetTemplate, read when a Modify comes without details (as moto's always do)."""
        self.call("get_template", env, {"TemplateBody": json.dumps(document)})

    def call(
        self, method: str, env: Environment, response: dict[str, Any] | None = None, **params: Any
    ) -> None:
        self.cf.add_response(method, response or {}, {"StackName": env.stack, **params})


def event(
    env: Environment,
    event_id: str,
    seconds: int,
    status: str,
    *,
    logical_id: str | None = None,
    resource_type: str = "AWS::CloudFormation::Stack",
    reason: str | None = None,
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "StackId": stack_id(env.stack),
        "EventId": event_id,
        "StackName": env.stack,
        "LogicalResourceId": logical_id or env.stack,
        "ResourceType": resource_type,
        "Timestamp": T0 + timedelta(seconds=seconds),
        "ResourceStatus": status,
    }
    if reason:
        raw["ResourceStatusReason"] = reason
    return raw


WITH_CHANGES = {
    "Status": "CREATE_COMPLETE",
    "Changes": [
        {
            "Type": "Resource",
            "ResourceChange": {
                "Action": "Modify",
                "LogicalResourceId": "WorkersSpotGroup",
                "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
                "Replacement": "False",
            },
        }
    ],
}
CREATES = {
    "Status": "CREATE_COMPLETE",
    "Changes": [
        {
            "Type": "Resource",
            "ResourceChange": {
                "Action": "Add",
                "LogicalResourceId": "WorkersSpotGroup",
                "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
            },
        }
    ],
}


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    cf, ec2, ssm = _client("cloudformation"), _client("ec2"), _client("ssm")
    clients = AwsClients(REGION)
    clients.use("cloudformation", cf)
    clients.use("ec2", ec2)
    clients.use("ssm", ssm)
    found = Cloud(clients, Stubber(cf), Stubber(ec2), Stubber(ssm))
    cf.meta.events.register("provide-client-params.cloudformation", found.record)
    # The real adapter, without the 3 s pause between polls.
    monkeypatch.setattr(
        fleetkit.infra.deploy,
        "_stacks",
        lambda c: CloudFormationStacks(
            c.client("cloudformation"), poll_seconds=0, sleep=lambda s: None
        ),
    )
    with found.cf, found.ec2, found.ssm:
        yield found


@pytest.fixture
def cli(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run `infra …` in-process on the stubbed clients, with consoles wide enough not to wrap."""
    monkeypatch.setattr(AwsClients, "for_environment", classmethod(lambda cls, env: cloud.clients))
    monkeypatch.setattr(fleetkit.infra.cli, "console", Console(width=200, highlight=False))
    monkeypatch.setattr(
        fleetkit.infra.cli, "errors", Console(stderr=True, width=200, highlight=False)
    )

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, list(args))

    return run


def never(_: Any) -> bool:
    raise AssertionError("confirm must not be asked")


def yes(_: Any) -> bool:
    return True


def run_deploy(env: Environment, cloud: Cloud, reported: list[StackEvent] | None = None) -> Any:
    """deploy, confirming the plan, which must hold changes."""

    def confirm(plan: ChangeSetPlan) -> bool:
        assert not plan.empty
        return True

    sink = reported if reported is not None else []
    return deploy(env, cloud.clients, confirm=confirm, on_event=sink.append)


# --- deploy -----------------------------------------------------------------------------------


def test_deploy_with_no_changes_deletes_the_change_set(cloud: Cloud) -> None:
    env = load_environment("local")
    cloud.stack(env, "UPDATE_COMPLETE")
    cloud.network(env)
    cloud.change_set(env, "UPDATE", {"Status": "FAILED", "StatusReason": NO_CHANGES_REASON})
    cloud.call("delete_change_set", env, ChangeSetName=ANY)
    cloud.stack(env, "UPDATE_COMPLETE")

    result = deploy(env, cloud.clients, confirm=never, on_event=never)

    assert result.outcome is DeployOutcome.NO_CHANGES
    assert result.plan is not None and result.plan.empty
    assert result.state is not None and result.state.status == "UPDATE_COMPLETE"
    assert result.notes == []
    assert cloud.change_set_names() == {result.plan.name}
    cloud.verify()


def _update_that_rolls_back(env: Environment, cloud: Cloud) -> dict[str, Any]:
    failing = event(
        env,
        "e-fail",
        12,
        "UPDATE_FAILED",
        logical_id="WorkersSpotGroup",
        resource_type="AWS::AutoScaling::AutoScalingGroup",
        reason=FAILED_REASON,
    )
    earlier = event(env, "e-old", 0, "UPDATE_COMPLETE")
    started = event(env, "e-start", 10, "UPDATE_IN_PROGRESS", reason="User Initiated")
    rolling = event(
        env,
        "e-rollback",
        13,
        "UPDATE_ROLLBACK_IN_PROGRESS",
        reason="The following resource(s) failed to update: [WorkersSpotGroup].",
    )
    done = event(env, "e-done", 30, "UPDATE_ROLLBACK_COMPLETE")
    cloud.stack(env, "UPDATE_COMPLETE")
    cloud.network(env)
    cloud.change_set(env, "UPDATE", {"Status": "CREATE_IN_PROGRESS"}, WITH_CHANGES, WITH_CHANGES)
    cloud.deployed_template(env, FleetBlueprint(env).to_dict())
    cloud.events(env, [earlier])  # what was there before: not reported
    cloud.call("execute_change_set", env, ChangeSetName=ANY)
    cloud.stack(env, "UPDATE_IN_PROGRESS")
    cloud.events(env, [earlier, started])
    cloud.stack(
        env,
        "UPDATE_ROLLBACK_COMPLETE",
        StackStatusReason="The following resource(s) failed to update: [WorkersSpotGroup].",
    )
    cloud.events(env, [earlier, started, failing, rolling, done])
    return failing


def test_update_that_rolls_back_reports_failed_events(cloud: Cloud) -> None:
    env = load_environment("local")
    failing = _update_that_rolls_back(env, cloud)
    reported: list[StackEvent] = []

    with pytest.raises(OperationFailedError) as caught:
        run_deploy(env, cloud, reported)

    error = caught.value
    assert str(error) == (
        "deploy of fleetkit-local failed: stack is UPDATE_ROLLBACK_COMPLETE "
        "(the previous version was restored)"
    )
    assert error.state is not None and error.state.status == "UPDATE_ROLLBACK_COMPLETE"
    assert [(e.event_id, e.logical_id, e.status, e.reason) for e in error.failed_events] == [
        ("e-fail", "WorkersSpotGroup", "UPDATE_FAILED", failing["ResourceStatusReason"])
    ]
    assert [e.event_id for e in reported] == ["e-start", "e-fail", "e-rollback", "e-done"]
    assert len(cloud.change_set_names()) == 1
    cloud.verify()


def test_cli_deploy_that_rolls_back_exits_1_with_the_reason(
    cloud: Cloud, cli: Callable[..., Any]
) -> None:
    env = load_environment("local")
    _update_that_rolls_back(env, cloud)

    result = cli("deploy", "--env", "local", "--yes")

    assert result.exit_code == 1, result.output
    assert "failed events" in result.stderr
    assert FAILED_REASON in result.stderr
    assert "WorkersSpotGroup" in result.stderr
    assert (
        "error: deploy of fleetkit-local failed: stack is UPDATE_ROLLBACK_COMPLETE "
        "(the previous version was restored)"
    ) in result.stderr
    # Events are shown as they happen, on stdout.
    assert "UPDATE_ROLLBACK_IN_PROGRESS" in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)
    cloud.verify()


def test_create_that_fails_leaves_nothing_running(cloud: Cloud) -> None:
    env = load_environment("local")
    failing = event(
        env,
        "c-fail",
        5,
        "CREATE_FAILED",
        logical_id="WorkersSpotGroup",
        resource_type="AWS::AutoScaling::AutoScalingGroup",
        reason=FAILED_REASON,
    )
    review = event(env, "c-review", 0, "REVIEW_IN_PROGRESS", reason="User Initiated")
    cloud.no_stack(env)
    cloud.network(env)
    cloud.change_set(env, "CREATE", CREATES, CREATES)
    # The change set already gave the new stack an event; it is read first so it is not shown.
    cloud.events(env, [review])
    cloud.call("execute_change_set", env, ChangeSetName=ANY)
    cloud.stack(env, "ROLLBACK_COMPLETE")
    cloud.events(
        env,
        [
            review,
            event(env, "c-start", 1, "CREATE_IN_PROGRESS", reason="User Initiated"),
            failing,
            event(env, "c-rollback", 6, "ROLLBACK_IN_PROGRESS"),
            event(env, "c-done", 9, "ROLLBACK_COMPLETE"),
        ],
    )
    reported: list[StackEvent] = []

    with pytest.raises(OperationFailedError) as caught:
        run_deploy(env, cloud, reported)

    assert str(caught.value) == (
        "deploy of fleetkit-local failed: stack is ROLLBACK_COMPLETE "
        "(nothing of it is left running)"
    )
    assert [e.event_id for e in caught.value.failed_events] == ["c-fail"]
    assert [e.event_id for e in reported] == ["c-start", "c-fail", "c-rollback", "c-done"]
    cloud.verify()


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (
            "ROLLBACK_COMPLETE",
            StackError,
            "stack fleetkit-local is ROLLBACK_COMPLETE: its creation failed and it holds "
            "nothing: `infra destroy --env local`, then deploy again",
        ),
        (
            "UPDATE_IN_PROGRESS",
            StackBusyError,
            "stack fleetkit-local is UPDATE_IN_PROGRESS; wait for it to finish (infra status)",
        ),
        (
            "DELETE_FAILED",
            StackError,
            "stack fleetkit-local is DELETE_FAILED: a delete did not finish: run "
            "`infra destroy --env local` again",
        ),
        (
            "ROLLBACK_FAILED",
            StackError,
            "stack fleetkit-local is ROLLBACK_FAILED: its creation failed and the rollback did "
            "too: `infra destroy --env local` (resources CloudFormation cannot delete are then "
            "listed), then deploy again",
        ),
        (
            "UPDATE_ROLLBACK_FAILED",
            StackError,
            "stack fleetkit-local is UPDATE_ROLLBACK_FAILED: an update's rollback failed: "
            "`aws cloudformation continue-update-rollback --stack-name fleetkit-local` (skip "
            "resources that cannot roll back), then deploy again",
        ),
    ],
    ids=[
        "rollback-complete-destroy-first",
        "busy",
        "delete-failed-destroy-again",
        "rollback-failed-destroy",
        "update-rollback-failed-continue",
    ],
)
def test_deploy_refuses_a_stack_it_cannot_change(
    cloud: Cloud, status: str, error: type[Exception], message: str
) -> None:
    env = load_environment("local")
    cloud.stack(env, status)  # and nothing else: no network lookup, no change set

    with pytest.raises(error) as caught:
        deploy(env, cloud.clients, confirm=never, on_event=never)

    assert type(caught.value) is error
    assert str(caught.value) == message
    assert cloud.operations() == ["DescribeStacks"]
    cloud.verify()


def _prod_create(env: Environment, cloud: Cloud) -> None:
    cloud.no_stack(env)
    cloud.network(env)
    cloud.redis_parameter(env)
    cloud.change_set(env, "CREATE", CREATES, CREATES)
    cloud.events(env, [])
    cloud.call("execute_change_set", env, ChangeSetName=ANY)
    cloud.stack(env, "CREATE_IN_PROGRESS", EnableTerminationProtection=False)
    cloud.events(env, [event(env, "p-start", 1, "CREATE_IN_PROGRESS", reason="User Initiated")])
    cloud.stack(env, "CREATE_COMPLETE", EnableTerminationProtection=False)
    cloud.events(
        env,
        [
            event(env, "p-start", 1, "CREATE_IN_PROGRESS", reason="User Initiated"),
            event(env, "p-done", 60, "CREATE_COMPLETE"),
        ],
    )


def test_prod_create_turns_termination_protection_on(cloud: Cloud) -> None:
    env = load_environment("prod")
    assert env.termination_protection
    _prod_create(env, cloud)
    cloud.call(
        "update_termination_protection",
        env,
        {"StackId": stack_id(env.stack)},
        EnableTerminationProtection=True,
    )

    result = run_deploy(env, cloud)

    assert result.outcome is DeployOutcome.CREATED
    assert result.state is not None and result.state.status == "CREATE_COMPLETE"
    assert result.notes == ["termination protection turned on for fleetkit-prod"]
    cloud.verify()


def test_prod_create_says_when_termination_protection_could_not_be_set(cloud: Cloud) -> None:
    env = load_environment("prod")
    _prod_create(env, cloud)
    cloud.cf.add_client_error(
        "update_termination_protection",
        service_error_code="AccessDenied",
        service_message="User is not authorized to perform: "
        "cloudformation:UpdateTerminationProtection",
        http_status_code=403,
        expected_params={"StackName": env.stack, "EnableTerminationProtection": True},
    )

    with pytest.raises(StackError) as caught:
        run_deploy(env, cloud)

    assert type(caught.value) is StackError
    message = str(caught.value)
    assert message.startswith(
        "stack fleetkit-prod is CREATE_COMPLETE but termination protection is NOT on: "
    )
    assert "AccessDenied" in message
    cloud.verify()


# --- destroy ----------------------------------------------------------------------------------


def test_destroy_refuses_a_protected_stack(cloud: Cloud) -> None:
    env = load_environment("local")
    cloud.stack(env, "UPDATE_COMPLETE", EnableTerminationProtection=True)

    with pytest.raises(StackProtectedError, match="has termination protection on"):
        destroy(env, cloud.clients, confirm=never, on_event=never)

    assert cloud.operations() == ["DescribeStacks"]  # no DeleteStack
    cloud.verify()


def test_cli_destroy_of_a_protected_stack_exits_1(cloud: Cloud, cli: Callable[..., Any]) -> None:
    env = load_environment("local")
    cloud.stack(env, "UPDATE_COMPLETE", EnableTerminationProtection=True)

    result = cli("destroy", "--env", "local", "--yes")

    assert result.exit_code == 1, result.output
    assert "termination protection on; nothing was deleted" in result.stderr
    assert "--no-enable-termination-protection --stack-name fleetkit-local" in result.stderr
    cloud.verify()


def test_destroy_of_a_missing_stack_did_not_exist(cloud: Cloud) -> None:
    env = load_environment("local")
    cloud.no_stack(env)

    result = destroy(env, cloud.clients, confirm=never, on_event=never)

    assert result.existed is False
    assert result.stack == "fleetkit-local"
    cloud.verify()


def test_cli_destroy_of_a_missing_stack_exits_0(cloud: Cloud, cli: Callable[..., Any]) -> None:
    env = load_environment("local")
    cloud.no_stack(env)

    result = cli("destroy", "--env", "local", "--yes")

    assert result.exit_code == 0, result.output
    assert "fleetkit-local: no such stack, nothing to destroy" in result.stdout
    cloud.verify()


def _delete(env: Environment, cloud: Cloud) -> str:
    """describe → events (by id) → delete_stack (by name); returns the stack id."""
    sid = stack_id(env.stack)
    cloud.events(env, [event(env, "x-old", 0, "UPDATE_COMPLETE")], by=sid)
    cloud.call("delete_stack", env)
    cloud.stack(env, "DELETE_IN_PROGRESS", by=sid)
    cloud.events(
        env,
        [event(env, "x-old", 0, "UPDATE_COMPLETE"), event(env, "x-start", 5, "DELETE_IN_PROGRESS")],
        by=sid,
    )
    return sid


def test_destroy_that_fails_reports_the_failed_event(cloud: Cloud) -> None:
    env = load_environment("local")
    failing = event(
        env,
        "x-fail",
        40,
        "DELETE_FAILED",
        logical_id="ArtifactBucket",
        resource_type="AWS::S3::Bucket",
        reason="The bucket you tried to delete is not empty",
    )
    cloud.stack(env, "UPDATE_COMPLETE")
    sid = _delete(env, cloud)
    cloud.stack(env, "DELETE_FAILED", by=sid)
    cloud.events(
        env,
        [
            event(env, "x-old", 0, "UPDATE_COMPLETE"),
            event(env, "x-start", 5, "DELETE_IN_PROGRESS"),
            failing,
            event(env, "x-stack-failed", 41, "DELETE_FAILED", reason="Resources failed to delete"),
        ],
        by=sid,
    )
    reported: list[StackEvent] = []

    with pytest.raises(OperationFailedError) as caught:
        destroy(env, cloud.clients, confirm=yes, on_event=reported.append)

    assert str(caught.value) == "destroy of fleetkit-local failed: stack is DELETE_FAILED"
    assert caught.value.state is not None and caught.value.state.status == "DELETE_FAILED"
    assert [(e.logical_id, e.reason) for e in caught.value.failed_events] == [
        ("ArtifactBucket", "The bucket you tried to delete is not empty"),
        ("fleetkit-local", "Resources failed to delete"),
    ]
    assert [e.event_id for e in reported] == ["x-start", "x-fail", "x-stack-failed"]
    cloud.verify()


def test_destroy_that_succeeds_notes_the_retained_bucket(cloud: Cloud) -> None:
    env = load_environment("local")
    cloud.stack(
        env,
        "UPDATE_COMPLETE",
        Outputs=[{"OutputKey": "ArtifactBucketName", "OutputValue": "fleetkit-local-artifacts"}],
    )
    sid = _delete(env, cloud)
    cloud.stack(env, "DELETE_COMPLETE", by=sid)
    cloud.events(env, [event(env, "x-done", 50, "DELETE_COMPLETE")], by=sid)
    asked: list[StackState] = []

    def confirm(state: StackState) -> bool:
        asked.append(state)
        return True

    result = destroy(env, cloud.clients, confirm=confirm, on_event=lambda e: None)

    assert result.existed and not result.declined
    assert [s.status for s in asked] == ["UPDATE_COMPLETE"]
    assert result.notes == [
        "artifact bucket fleetkit-local-artifacts was retained (DeletionPolicy Retain); "
        "empty and delete it yourself when it is no longer needed"
    ]
    cloud.verify()
