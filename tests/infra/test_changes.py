"""What a Modify changes, property by property: the pure comparison of two templates, a change
set's details, and how a plan shows them."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from fleetkit.infra.changes import PropertyChange, detail_changes, show, template_changes
from fleetkit.infra.stacks import Change, ChangeSetPlan
from fleetkit.infra.views import plan_table, plan_title, property_line

GROUP = "WorkersSpotGroup"
OVERRIDES = [{"InstanceType": "t3.small"}, {"InstanceType": "t3a.small"}]
BASE: dict[str, Any] = {
    "MaxSize": "500",
    "MinSize": "0",
    "CapacityRebalance": True,
    "VPCZoneIdentifier": {"Ref": "SubnetIds"},
    "MixedInstancesPolicy": {
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 0},
        "LaunchTemplate": {"Overrides": OVERRIDES},
    },
}


def template(**properties: Any) -> dict[str, Any]:
    merged = {**BASE, **properties}
    return {
        "Resources": {
            GROUP: {
                "Type": "AWS::AutoScaling::AutoScalingGroup",
                "Properties": {k: v for k, v in merged.items() if v is not None},
            }
        }
    }


def policy(percentage: int = 0, overrides: list[dict[str, str]] = OVERRIDES) -> dict[str, Any]:
    return {
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": percentage},
        "LaunchTemplate": {"Overrides": overrides},
    }


CASES: list[tuple[str, dict[str, Any], list[PropertyChange]]] = [
    ("same", {}, []),
    ("scalar", {"MaxSize": "400"}, [PropertyChange("MaxSize", "500", "400")]),
    ("same-value-other-spelling", {"MaxSize": 500, "CapacityRebalance": "true"}, []),
    ("added", {"DefaultCooldown": "60"}, [PropertyChange("DefaultCooldown", None, "60")]),
    ("removed", {"CapacityRebalance": None}, [PropertyChange("CapacityRebalance", True, None)]),
    (
        "nested-block-down-to-the-value",
        {"MixedInstancesPolicy": policy(percentage=10)},
        [
            PropertyChange(
                "MixedInstancesPolicy.InstancesDistribution.OnDemandPercentageAboveBaseCapacity",
                0,
                10,
            )
        ],
    ),
    (
        "list-whole",
        {"MixedInstancesPolicy": policy(overrides=OVERRIDES[:1])},
        [PropertyChange("MixedInstancesPolicy.LaunchTemplate.Overrides", OVERRIDES, OVERRIDES[:1])],
    ),
    (
        "intrinsic-function-whole",
        {"VPCZoneIdentifier": {"Fn::Split": [",", {"Ref": "SubnetIds"}]}},
        [
            PropertyChange(
                "VPCZoneIdentifier",
                {"Ref": "SubnetIds"},
                {"Fn::Split": [",", {"Ref": "SubnetIds"}]},
            )
        ],
    ),
    (
        "several-in-name-order",
        {"MinSize": "1", "MaxSize": "400"},
        [PropertyChange("MaxSize", "500", "400"), PropertyChange("MinSize", "0", "1")],
    ),
]


@pytest.mark.parametrize(("new", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_template_changes(new: dict[str, Any], expected: list[PropertyChange]) -> None:
    assert template_changes(template(), template(**new), GROUP) == expected


def test_a_resource_missing_on_one_side_is_all_additions() -> None:
    added = template_changes({}, template(MaxSize="1"), GROUP)
    assert [c.path for c in added] == sorted(BASE)
    assert all(c.before is None for c in added)
    assert PropertyChange("MaxSize", None, "1") in added
    assert template_changes(template(), template(), "NoSuchResource") == []


def test_change_set_details_with_values() -> None:
    def detail(name: str, before: str | None, after: str | None, **extra: Any) -> dict[str, Any]:
        target: dict[str, Any] = {"Attribute": "Properties", "Name": name, **extra}
        if before is not None:
            target["BeforeValue"] = before
        if after is not None:
            target["AfterValue"] = after
        return {"Target": target, "ChangeSource": "DirectModification"}

    details = [
        detail("MaxSize", "500", "400", Path="/Properties/MaxSize"),
        # The same property again, from another cause: shown once.
        detail("MaxSize", "500", "400", Path="/Properties/MaxSize"),
        detail("Overrides", "[]", None, Path="/Properties/MixedInstancesPolicy/Overrides"),
        {"Target": {"Attribute": "Tags", "Name": "Tags"}},
        {"Target": {"Attribute": "Properties", "Name": "MinSize"}},  # no values: left out
    ]
    assert detail_changes(details) == [
        PropertyChange("MaxSize", "500", "400"),
        PropertyChange("MixedInstancesPolicy.Overrides", "[]", None),
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("400", "400"),
        (None, "(none)"),
        (True, "true"),
        (OVERRIDES, '[{"InstanceType":"t3.small"},{"InstanceType":"t3a.small"}]'),
        ("x" * 80, "x" * 59 + "…"),
        ("two\nlines", "two lines"),
    ],
)
def test_show(value: Any, shown: str) -> None:
    assert show(value) == shown


def test_property_line() -> None:
    assert property_line(PropertyChange("MaxSize", "500", "400")) == "MaxSize 500 → 400"


@pytest.mark.parametrize(("count", "title"), [(0, "0 changes"), (1, "1 change"), (2, "2 changes")])
def test_plan_title_counts(count: int, title: str) -> None:
    plan = ChangeSetPlan(
        "s", "cs", "UPDATE", [Change("Add", f"R{i}", "T", "") for i in range(count)]
    )
    assert plan_title(plan) == f"s: update ({title})"


def test_plan_table_shows_what_changes_literally() -> None:
    changes = (
        PropertyChange("MaxSize", "500", "400"),
        PropertyChange("Tags", None, "[a-z] [bold]x"),
    )
    plan = ChangeSetPlan(
        "fleetkit-local", "cs", "UPDATE", [Change("Modify", GROUP, "AWS::X", "False", changes)]
    )
    console = Console(width=200, record=True, highlight=False, file=io.StringIO())
    console.print(plan_table(plan))
    text = console.export_text()
    assert "fleetkit-local: update (1 change)" in text
    assert "MaxSize 500 → 400" in text
    assert "Tags (none) → [a-z] [bold]x" in text
