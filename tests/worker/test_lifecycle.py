"""Completing the terminating lifecycle action (moto does not implement it: Stubber)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from fleetkit.worker.lifecycle import complete_termination

INSTANCE = "i-0123456789abcdef0"


@pytest.fixture
def autoscaling() -> tuple[object, Stubber]:
    client = boto3.client(
        "autoscaling", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


def described(group: str | None) -> dict[str, object]:
    if group is None:
        return {"AutoScalingInstances": []}
    return {
        "AutoScalingInstances": [
            {
                "InstanceId": INSTANCE,
                "AutoScalingGroupName": group,
                "AvailabilityZone": "us-east-1a",
                "LifecycleState": "Terminating:Wait",
                "HealthStatus": "HEALTHY",
                "ProtectedFromScaleIn": False,
            }
        ]
    }


def test_completes_the_terminating_hook_with_continue(autoscaling: tuple[object, Stubber]) -> None:
    client, stub = autoscaling
    stub.add_response(
        "describe_auto_scaling_instances", described("g-spot"), {"InstanceIds": [INSTANCE]}
    )
    stub.add_response(
        "complete_lifecycle_action",
        {},
        {
            "LifecycleHookName": "fleetkit-terminating",
            "AutoScalingGroupName": "g-spot",
            "LifecycleActionResult": "CONTINUE",
            "InstanceId": INSTANCE,
        },
    )
    with stub:
        assert complete_termination(client, INSTANCE) is True
    stub.assert_no_pending_responses()


def test_not_in_a_group(autoscaling: tuple[object, Stubber]) -> None:
    client, stub = autoscaling
    stub.add_response(
        "describe_auto_scaling_instances", described(None), {"InstanceIds": [INSTANCE]}
    )
    with stub:
        assert complete_termination(client, INSTANCE) is False
    stub.assert_no_pending_responses()


def test_no_pending_action_is_not_fatal(
    autoscaling: tuple[object, Stubber], caplog: pytest.LogCaptureFixture
) -> None:
    client, stub = autoscaling
    stub.add_response(
        "describe_auto_scaling_instances", described("g"), {"InstanceIds": [INSTANCE]}
    )
    stub.add_client_error(
        "complete_lifecycle_action",
        service_error_code="ValidationError",
        service_message="No active Lifecycle Action found with instance ID i-0123456789abcdef0",
    )
    with stub:
        assert complete_termination(client, INSTANCE) is False
    assert "No active Lifecycle Action" in caplog.text
