"""AsgCapacityProvider's retries (botocore's are off): jittered, capped backoff on throttles,
contention and 5xx; every other error at once. With botocore's Stubber.
"""

from __future__ import annotations

import random

import boto3
import pytest
from botocore.config import Config

from fleetkit.autoscaler.asg import AsgCapacityProvider
from fleetkit.autoscaler.backoff import full_jitter
from fleetkit.autoscaler.errors import CapacityUnavailable
from fleetkit.autoscaler.model import Capacity, GroupState
from tests.autoscaler.asg_stubs import ENV, REGION, stubbed
from tests.autoscaler.asg_stubs import no_sleep as _no_sleep
from tests.redis_server import free_port

pytestmark = pytest.mark.usefixtures("offline_aws")


# --- retries, with Stubber -----------------------------------------------------------------------


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
