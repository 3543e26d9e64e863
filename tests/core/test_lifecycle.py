"""Auto Scaling lifecycle states come from botocore's model and fold into what fleetkit acts on."""

from __future__ import annotations

import pytest

from fleetkit.core.lifecycle import Lifecycle, asg_lifecycle_states, is_terminating, lifecycle_of

CASES = [
    ("Pending", Lifecycle.PENDING, False),
    ("Pending:Wait", Lifecycle.PENDING, False),
    ("Pending:Proceed", Lifecycle.PENDING, False),
    ("InService", Lifecycle.IN_SERVICE, False),
    ("Terminating", Lifecycle.LEAVING, True),
    ("Terminating:Wait", Lifecycle.LEAVING, True),
    ("Terminating:Proceed", Lifecycle.LEAVING, True),
    ("Terminating:Retained", Lifecycle.LEAVING, True),
    ("Terminated", Lifecycle.LEAVING, True),
    ("Detaching", Lifecycle.LEAVING, False),
    ("Detached", Lifecycle.LEAVING, False),
    ("Quarantined", Lifecycle.LEAVING, False),
    ("EnteringStandby", Lifecycle.STANDBY, False),
    ("Standby", Lifecycle.STANDBY, False),
    ("ReplacingRootVolume", Lifecycle.STANDBY, False),
    ("RootVolumeReplaced", Lifecycle.STANDBY, False),
    ("Warmed:Pending", Lifecycle.STANDBY, False),
    ("Warmed:Running", Lifecycle.STANDBY, False),
    ("Warmed:Terminating:Wait", Lifecycle.STANDBY, True),
    ("Warmed:Terminated", Lifecycle.STANDBY, True),
]


@pytest.mark.parametrize(("state", "lifecycle", "terminating"), CASES, ids=[c[0] for c in CASES])
def test_states_fold_into_what_fleetkit_acts_on(
    state: str, lifecycle: Lifecycle, terminating: bool
) -> None:
    assert state in asg_lifecycle_states()
    assert lifecycle_of(state) is lifecycle
    assert is_terminating(state) is terminating


def test_the_states_are_botocores_own() -> None:
    from botocore.session import get_session

    shape = get_session().get_service_model("autoscaling").shape_for("LifecycleState")
    assert asg_lifecycle_states() == frozenset(shape.enum)


def test_a_state_newer_than_botocore_is_not_capacity() -> None:
    assert lifecycle_of("Hovering:Wait") is Lifecycle.STANDBY
    assert not is_terminating("Hovering:Wait")
