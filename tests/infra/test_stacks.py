"""CloudFormationStacks against a stubbed CloudFormation client.

These cover what the moto fake cloud does not do: AWS's FAILED change set for "no changes",
change sets that fail for a real reason, paged change sets and events, and polls that see a
stack mid-operation. Every test ends with `assert_no_pending_responses`, so the stubbed calls
listed in it are exactly the calls made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from fleetkit.infra.changes import PropertyChange
from fleetkit.infra.errors import StackBusyError, StackError
from fleetkit.infra.stacks import (
    Change,
    ChangeSetPlan,
    CloudFormationStacks,
    StackEvent,
    StackPhase,
    phase_of,
)

REGION = "us-east-1"
STACK = "fleetkit-test"
STACK_ID = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{STACK}/4f1c2d3e-0000-1111-2222"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NO_CHANGES_REASON = (
    "The submitted information didn't contain changes. Submit different information to create "
    "a change set."
)


def stack_response(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": STACK,
                "StackId": STACK_ID,
                "CreationTime": T0,
                "StackStatus": status,
                **extra,
            }
        ]
    }


def raw_event(
    event_id: str,
    seconds: int,
    status: str,
    *,
    logical_id: str = STACK,
    resource_type: str = "AWS::CloudFormation::Stack",
    reason: str | None = None,
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "StackId": STACK_ID,
        "EventId": event_id,
        "StackName": STACK,
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "Timestamp": T0 + timedelta(seconds=seconds),
        "ResourceStatus": status,
    }
    if reason:
        raw["ResourceStatusReason"] = reason
    return raw


def change_entry(action: str, logical_id: str, resource_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Resource",
        "ResourceChange": {
            "Action": action,
            "LogicalResourceId": logical_id,
            "ResourceType": resource_type,
            **extra,
        },
    }


@pytest.fixture
def cf() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client(
        "cloudformation",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    with Stubber(client) as stubber:
        yield client, stubber


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def stacks(cf: tuple[Any, Stubber], sleeps: list[float]) -> CloudFormationStacks:
    return CloudFormationStacks(cf[0], poll_seconds=0, sleep=sleeps.append)


@pytest.fixture
def stubber(cf: tuple[Any, Stubber]) -> Stubber:
    return cf[1]


def expect_create_change_set(stubber: Stubber, change_type: str, *, body: str = "{}") -> None:
    stubber.add_response(
        "create_change_set",
        {"Id": f"arn:aws:cloudformation:{REGION}:123456789012:changeSet/x/1", "StackId": STACK_ID},
        {
            "StackName": STACK,
            "ChangeSetName": ANY,
            "ChangeSetType": change_type,
            "TemplateBody": body,
            "Parameters": [{"ParameterKey": "VpcId", "ParameterValue": "vpc-1"}],
            "Capabilities": ["CAPABILITY_IAM"],
            "Tags": [{"Key": "fleetkit:env", "Value": "test"}],
        },
    )


def expect_describe_change_set(
    stubber: Stubber, response: dict[str, Any], **params: str | bool
) -> None:
    stubber.add_response(
        "describe_change_set",
        {"StackName": STACK, **response},
        {"StackName": STACK, "ChangeSetName": ANY, **params},
    )


def plan(stacks: CloudFormationStacks, *, exists: bool) -> ChangeSetPlan:
    return stacks.plan(
        STACK,
        body="{}",
        parameters={"VpcId": "vpc-1"},
        tags={"fleetkit:env": "test"},
        exists=exists,
    )


PHASES = [
    (None, StackPhase.ABSENT),
    ("DELETE_COMPLETE", StackPhase.ABSENT),
    ("REVIEW_IN_PROGRESS", StackPhase.ABSENT),
    ("CREATE_COMPLETE", StackPhase.STABLE),
    ("UPDATE_COMPLETE", StackPhase.STABLE),
    ("UPDATE_ROLLBACK_COMPLETE", StackPhase.STABLE),
    ("CREATE_IN_PROGRESS", StackPhase.BUSY),
    ("UPDATE_ROLLBACK_IN_PROGRESS", StackPhase.BUSY),
    ("DELETE_IN_PROGRESS", StackPhase.BUSY),
    ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", StackPhase.BUSY),
    ("ROLLBACK_COMPLETE", StackPhase.FAILED),
    ("UPDATE_ROLLBACK_FAILED", StackPhase.FAILED),
    ("DELETE_FAILED", StackPhase.FAILED),
]


@pytest.mark.parametrize(
    ("status", "phase"), PHASES, ids=[f"{status}-is-{phase}" for status, phase in PHASES]
)
def test_phase_of_classifies_stack_status(status: str | None, phase: StackPhase) -> None:
    assert phase_of(status) is phase


@pytest.mark.parametrize(
    "reason",
    [NO_CHANGES_REASON, "No updates are to be performed."],
    ids=["didnt-contain-changes", "no-updates"],
)
def test_change_set_failed_for_no_changes_is_an_empty_plan(
    stacks: CloudFormationStacks, stubber: Stubber, sleeps: list[float], reason: str
) -> None:
    expect_create_change_set(stubber, "UPDATE")
    expect_describe_change_set(stubber, {"Status": "CREATE_PENDING"})
    expect_describe_change_set(stubber, {"Status": "FAILED", "StatusReason": reason})

    result = plan(stacks, exists=True)

    assert result.empty
    assert result.change_type == "UPDATE"
    assert result.changes == []
    assert sleeps == [0]  # polled once while the change set was pending
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("exists", "review_stack_deleted"),
    [(False, True), (True, False)],
    ids=["create-removes-review-stack", "update-keeps-stack"],
)
def test_change_set_failed_for_another_reason_raises_and_is_deleted(
    stacks: CloudFormationStacks, stubber: Stubber, exists: bool, review_stack_deleted: bool
) -> None:
    reason = "Template format error: Unresolved resource dependencies [Vpc] in the Resources block"
    expect_create_change_set(stubber, "UPDATE" if exists else "CREATE")
    expect_describe_change_set(stubber, {"Status": "FAILED", "StatusReason": reason})
    stubber.add_response("delete_change_set", {}, {"StackName": STACK, "ChangeSetName": ANY})
    if review_stack_deleted:
        stubber.add_response(
            "describe_stacks", stack_response("REVIEW_IN_PROGRESS"), {"StackName": STACK}
        )
        stubber.add_response("delete_stack", {}, {"StackName": STACK})

    with pytest.raises(StackError) as caught:
        plan(stacks, exists=exists)

    assert str(caught.value) == f"change set for {STACK} failed: {reason}"
    stubber.assert_no_pending_responses()


def test_plan_reads_every_page_of_changes(stacks: CloudFormationStacks, stubber: Stubber) -> None:
    expect_create_change_set(stubber, "UPDATE")
    expect_describe_change_set(stubber, {"Status": "CREATE_IN_PROGRESS"})
    expect_describe_change_set(stubber, {"Status": "CREATE_COMPLETE"})
    expect_describe_change_set(
        stubber,
        {
            "Status": "CREATE_COMPLETE",
            "Changes": [
                change_entry(
                    "Modify",
                    "WorkersSpotGroup",
                    "AWS::AutoScaling::AutoScalingGroup",
                    Replacement="Conditional",
                ),
            ],
            "NextToken": "page-2",
        },
        IncludePropertyValues=True,
    )
    expect_describe_change_set(
        stubber,
        {
            "Status": "CREATE_COMPLETE",
            "Changes": [change_entry("Add", "ArtifactBucket", "AWS::S3::Bucket")],
        },
        NextToken="page-2",
        IncludePropertyValues=True,
    )
    # The Modify came without details: the deployed template is compared with the new one.
    stubber.add_response("get_template", {"TemplateBody": "{}"}, {"StackName": STACK})

    result = plan(stacks, exists=True)

    assert result.changes == [
        Change("Modify", "WorkersSpotGroup", "AWS::AutoScaling::AutoScalingGroup", "Conditional"),
        Change("Add", "ArtifactBucket", "AWS::S3::Bucket", ""),
    ]
    assert not result.empty
    stubber.assert_no_pending_responses()


def plan_of(
    stacks: CloudFormationStacks, body: dict[str, Any], *, exists: bool = True
) -> ChangeSetPlan:
    return stacks.plan(
        STACK,
        body=json.dumps(body),
        parameters={"VpcId": "vpc-1"},
        tags={"fleetkit:env": "test"},
        exists=exists,
    )


def group_template(max_size: str) -> dict[str, Any]:
    group = {"Type": "AWS::AutoScaling::AutoScalingGroup", "Properties": {"MaxSize": max_size}}
    return {"Resources": {"WorkersSpotGroup": group}}


def test_modify_properties_come_from_the_change_set_details(
    stacks: CloudFormationStacks, stubber: Stubber
) -> None:
    expect_create_change_set(stubber, "UPDATE", body=json.dumps(group_template("400")))
    expect_describe_change_set(stubber, {"Status": "CREATE_COMPLETE"})
    detail = {
        "Target": {
            "Attribute": "Properties",
            "Name": "MaxSize",
            "Path": "/Properties/MaxSize",
            "RequiresRecreation": "Never",
            "BeforeValue": "500",
            "AfterValue": "400",
        },
        "Evaluation": "Static",
        "ChangeSource": "DirectModification",
    }
    expect_describe_change_set(
        stubber,
        {
            "Status": "CREATE_COMPLETE",
            "Changes": [
                change_entry(
                    "Modify",
                    "WorkersSpotGroup",
                    "AWS::AutoScaling::AutoScalingGroup",
                    Replacement="False",
                    Details=[detail],
                )
            ],
        },
        IncludePropertyValues=True,
    )
    # No GetTemplate: the details say it all.

    result = plan_of(stacks, group_template("400"))

    assert [c.properties for c in result.changes] == [(PropertyChange("MaxSize", "500", "400"),)]
    stubber.assert_no_pending_responses()


def test_modify_without_details_compares_the_deployed_template(
    stacks: CloudFormationStacks, stubber: Stubber
) -> None:
    # moto's change sets, and AWS's for a botocore without IncludePropertyValues.
    expect_create_change_set(stubber, "UPDATE", body=json.dumps(group_template("400")))
    expect_describe_change_set(stubber, {"Status": "CREATE_COMPLETE"})
    expect_describe_change_set(
        stubber,
        {
            "Status": "CREATE_COMPLETE",
            "Changes": [
                change_entry("Modify", "WorkersSpotGroup", "AWS::AutoScaling::AutoScalingGroup"),
                change_entry("Add", "ArtifactBucket", "AWS::S3::Bucket"),
            ],
        },
        IncludePropertyValues=True,
    )
    stubber.add_response(
        "get_template",
        {"TemplateBody": json.dumps(group_template("500"))},
        {"StackName": STACK},
    )

    result = plan_of(stacks, group_template("400"))

    assert [(c.logical_id, c.properties) for c in result.changes] == [
        ("WorkersSpotGroup", (PropertyChange("MaxSize", "500", "400"),)),
        ("ArtifactBucket", ()),
    ]
    stubber.assert_no_pending_responses()


def test_a_deployed_template_that_cannot_be_read_is_a_warning_not_a_failed_diff(
    stacks: CloudFormationStacks, stubber: Stubber
) -> None:
    expect_create_change_set(stubber, "UPDATE", body=json.dumps(group_template("400")))
    expect_describe_change_set(stubber, {"Status": "CREATE_COMPLETE"})
    expect_describe_change_set(
        stubber,
        {
            "Status": "CREATE_COMPLETE",
            "Changes": [
                change_entry("Modify", "WorkersSpotGroup", "AWS::AutoScaling::AutoScalingGroup")
            ],
        },
        IncludePropertyValues=True,
    )
    stubber.add_client_error(
        "get_template", service_error_code="AccessDenied", service_message="not allowed"
    )

    result = plan_of(stacks, group_template("400"))

    # The plan stands (the change set is kept for a deploy to execute), without property lines.
    assert [(c.logical_id, c.properties) for c in result.changes] == [("WorkersSpotGroup", ())]
    assert result.warnings == [
        "what each Modify changes is not shown: reading the template of fleetkit-test: "
        "AccessDenied: not allowed"
    ]
    stubber.assert_no_pending_responses()


def test_change_set_still_pending_after_timeout_raises_and_is_deleted(
    stubber: Stubber, cf: Any
) -> None:
    stacks = CloudFormationStacks(cf[0], poll_seconds=0, timeout_seconds=-1, sleep=lambda s: None)
    expect_create_change_set(stubber, "CREATE")
    expect_describe_change_set(stubber, {"Status": "CREATE_IN_PROGRESS"})
    stubber.add_response("delete_change_set", {}, {"StackName": STACK, "ChangeSetName": ANY})
    stubber.add_response(
        "describe_stacks", stack_response("REVIEW_IN_PROGRESS"), {"StackName": STACK}
    )
    stubber.add_response("delete_stack", {}, {"StackName": STACK})

    with pytest.raises(StackError, match="still CREATE_IN_PROGRESS"):
        plan(stacks, exists=False)
    stubber.assert_no_pending_responses()


def test_error_while_reading_changes_deletes_the_change_set(
    stacks: CloudFormationStacks, stubber: Stubber
) -> None:
    expect_create_change_set(stubber, "UPDATE")
    expect_describe_change_set(stubber, {"Status": "CREATE_COMPLETE"})
    stubber.add_client_error(
        "describe_change_set", service_error_code="Throttling", service_message="Rate exceeded"
    )
    stubber.add_response("delete_change_set", {}, {"StackName": STACK, "ChangeSetName": ANY})

    with pytest.raises(StackError, match="Throttling: Rate exceeded"):
        plan(stacks, exists=True)
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    "respond",
    [
        lambda s: s.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message=f"Stack with id {STACK} does not exist",
            expected_params={"StackName": STACK},
        ),
        lambda s: s.add_response(
            "describe_stacks", stack_response("DELETE_COMPLETE"), {"StackName": STACK}
        ),
        lambda s: s.add_response("describe_stacks", {"Stacks": []}, {"StackName": STACK}),
    ],
    ids=["does-not-exist", "delete-complete", "empty-list"],
)
def test_describe_of_absent_stack_is_none(
    stacks: CloudFormationStacks, stubber: Stubber, respond: Any
) -> None:
    respond(stubber)
    assert stacks.describe(STACK) is None
    stubber.assert_no_pending_responses()


def test_describe_reads_state(stacks: CloudFormationStacks, stubber: Stubber) -> None:
    stubber.add_response(
        "describe_stacks",
        stack_response(
            "UPDATE_ROLLBACK_COMPLETE",
            StackStatusReason="The following resource(s) failed to update: [WorkersSpotGroup].",
            EnableTerminationProtection=True,
            Outputs=[{"OutputKey": "ArtifactBucketName", "OutputValue": "fleetkit-artifacts"}],
        ),
        {"StackName": STACK},
    )

    state = stacks.describe(STACK)

    assert state is not None
    assert state.status == "UPDATE_ROLLBACK_COMPLETE"
    assert state.phase is StackPhase.STABLE
    assert state.reason == "The following resource(s) failed to update: [WorkersSpotGroup]."
    assert state.termination_protection is True
    assert state.outputs == {"ArtifactBucketName": "fleetkit-artifacts"}
    assert state.stack_id == STACK_ID
    stubber.assert_no_pending_responses()


def test_describe_error_other_than_missing_is_a_stack_error(
    stacks: CloudFormationStacks, stubber: Stubber
) -> None:
    stubber.add_client_error(
        "describe_stacks",
        service_error_code="AccessDenied",
        service_message="User is not authorized to perform: cloudformation:DescribeStacks",
        expected_params={"StackName": STACK},
    )

    with pytest.raises(StackError) as caught:
        stacks.describe(STACK)

    assert str(caught.value) == (
        f"describing stack {STACK}: AccessDenied: "
        "User is not authorized to perform: cloudformation:DescribeStacks"
    )
    stubber.assert_no_pending_responses()


def test_wait_reports_each_new_event_once_in_timestamp_order(
    stacks: CloudFormationStacks, stubber: Stubber, sleeps: list[float]
) -> None:
    old = raw_event("e0", 0, "UPDATE_COMPLETE")
    e1 = raw_event("e1", 10, "UPDATE_IN_PROGRESS", reason="User Initiated")
    e2 = raw_event(
        "e2",
        11,
        "UPDATE_IN_PROGRESS",
        logical_id="WorkersSpotGroup",
        resource_type="AWS::AutoScaling::AutoScalingGroup",
    )
    e3 = raw_event(
        "e3",
        20,
        "UPDATE_COMPLETE",
        logical_id="WorkersSpotGroup",
        resource_type="AWS::AutoScaling::AutoScalingGroup",
    )
    e4 = raw_event("e4", 21, "UPDATE_COMPLETE")
    # Poll 1: busy; AWS lists events newest first, here over two pages.
    stubber.add_response(
        "describe_stacks", stack_response("UPDATE_IN_PROGRESS"), {"StackName": STACK}
    )
    stubber.add_response(
        "describe_stack_events",
        {"StackEvents": [e2, e1], "NextToken": "more"},
        {"StackName": STACK},
    )
    stubber.add_response(
        "describe_stack_events", {"StackEvents": [old]}, {"StackName": STACK, "NextToken": "more"}
    )
    # Poll 2: done; the events seen in poll 1 come again and must not be reported twice.
    stubber.add_response("describe_stacks", stack_response("UPDATE_COMPLETE"), {"StackName": STACK})
    stubber.add_response(
        "describe_stack_events", {"StackEvents": [e4, e3, e2, e1, old]}, {"StackName": STACK}
    )
    reported: list[StackEvent] = []
    seen = {"e0"}

    state, new = stacks.wait(STACK, seen=seen, on_event=reported.append)

    assert state is not None
    assert state.status == "UPDATE_COMPLETE"
    assert [e.event_id for e in reported] == ["e1", "e2", "e3", "e4"]
    assert new == reported
    assert seen == {"e0", "e1", "e2", "e3", "e4"}
    assert reported[1] == StackEvent(
        event_id="e2",
        timestamp=T0 + timedelta(seconds=11),
        logical_id="WorkersSpotGroup",
        resource_type="AWS::AutoScaling::AutoScalingGroup",
        status="UPDATE_IN_PROGRESS",
        reason="",
    )
    assert reported[0].reason == "User Initiated"
    assert sleeps == [0]
    stubber.assert_no_pending_responses()


def test_wait_for_a_deleted_stack_polls_by_id_and_ends_at_none(
    stacks: CloudFormationStacks, stubber: Stubber
) -> None:
    stubber.add_response(
        "describe_stacks", stack_response("DELETE_COMPLETE"), {"StackName": STACK_ID}
    )
    stubber.add_response(
        "describe_stack_events",
        {"StackEvents": [raw_event("d1", 5, "DELETE_COMPLETE")]},
        {"StackName": STACK_ID},
    )
    reported: list[StackEvent] = []

    state, new = stacks.wait(STACK, seen=set(), on_event=reported.append, stack_id=STACK_ID)

    assert state is None
    assert [e.status for e in new] == ["DELETE_COMPLETE"]
    assert new == reported
    stubber.assert_no_pending_responses()


def test_wait_that_outlasts_its_timeout_raises_busy(cf: Any, stubber: Stubber) -> None:
    stacks = CloudFormationStacks(cf[0], poll_seconds=0, timeout_seconds=-1, sleep=lambda s: None)
    stubber.add_response(
        "describe_stacks", stack_response("UPDATE_IN_PROGRESS"), {"StackName": STACK}
    )
    stubber.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": STACK})

    with pytest.raises(StackBusyError, match=f"stack {STACK} still UPDATE_IN_PROGRESS"):
        stacks.wait(STACK, seen=set(), on_event=lambda e: None)
    stubber.assert_no_pending_responses()


def test_event_ids_of_a_missing_stack_are_empty(
    stacks: CloudFormationStacks, stubber: Stubber
) -> None:
    stubber.add_client_error(
        "describe_stack_events",
        service_error_code="ValidationError",
        service_message=f"Stack [{STACK}] does not exist",
        expected_params={"StackName": STACK},
    )

    assert stacks.event_ids(STACK) == set()
    stubber.assert_no_pending_responses()
