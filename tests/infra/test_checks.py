"""Our own template rules (what AWS rejects but cfn-lint and moto accept), and cfn-lint itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints import FleetBlueprint
from fleetkit.infra.checks import check_template, lint_template, verify_template
from fleetkit.infra.errors import LintError, TemplateError
from tests.infra.helpers import environment, legacy, rendered

Mutation = Callable[[dict[str, Any]], None]


def spot_in_launch_template(doc: dict[str, Any]) -> None:
    data = doc["Resources"]["WorkersLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    data["InstanceMarketOptions"] = {"MarketType": "spot"}


def min_above_max(doc: dict[str, Any]) -> None:
    doc["Resources"]["WorkersSpotGroup"]["Properties"]["MinSize"] = "501"


def latest_version(doc: dict[str, Any]) -> None:
    policy = doc["Resources"]["WorkersSpotGroup"]["Properties"]["MixedInstancesPolicy"]
    policy["LaunchTemplate"]["LaunchTemplateSpecification"]["Version"] = "$Latest"


def latest_version_plain_group(doc: dict[str, Any]) -> None:
    spec = doc["Resources"]["AutoscalerGroup"]["Properties"]["LaunchTemplate"]
    spec["Version"] = "$Latest"


def desired_capacity(doc: dict[str, Any]) -> None:
    doc["Resources"]["WorkersSpotGroup"]["Properties"]["DesiredCapacity"] = "2"


def on_demand_spot_group(doc: dict[str, Any]) -> None:
    policy = doc["Resources"]["WorkersSpotGroup"]["Properties"]["MixedInstancesPolicy"]
    del policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"]


def legacy_missing_spot_price(doc: dict[str, Any]) -> None:
    del doc["Resources"]["WorkersSpotLaunchConfiguration"]["Properties"]["SpotPrice"]


def legacy_wrong_spot_price(doc: dict[str, Any]) -> None:
    doc["Resources"]["WorkersSpotLaunchConfiguration"]["Properties"]["SpotPrice"] = "0.9"


def legacy_spot_fallback(doc: dict[str, Any]) -> None:
    doc["Resources"]["WorkersOnDemandLaunchConfiguration"]["Properties"]["SpotPrice"] = "0.05"


CASES: list[tuple[str, Callable[[], Environment], Mutation, str]] = [
    (
        "spot-launch-template-in-mixed-policy",
        environment,
        spot_in_launch_template,
        "WorkersSpotGroup: launch template WorkersLaunchTemplate requests spot",
    ),
    (
        "min-above-max",
        environment,
        min_above_max,
        "WorkersSpotGroup: MinSize 501 is above MaxSize 500",
    ),
    (
        "latest-version",
        environment,
        latest_version,
        "launch template version '$Latest' is not allowed",
    ),
    (
        "latest-version-plain",
        environment,
        latest_version_plain_group,
        "AutoscalerGroup: launch template version '$Latest'",
    ),
    ("desired-capacity", environment, desired_capacity, "DesiredCapacity is set"),
    (
        "spot-group-defaults-to-on-demand",
        environment,
        on_demand_spot_group,
        "OnDemandPercentageAboveBaseCapacity 100",
    ),
    (
        "legacy-missing-spot-price",
        legacy,
        legacy_missing_spot_price,
        "WorkersSpotLaunchConfiguration has no SpotPrice; bid 0.05",
    ),
    ("legacy-wrong-spot-price", legacy, legacy_wrong_spot_price, "SpotPrice 0.9 != bid 0.05"),
    (
        "legacy-spot-fallback",
        legacy,
        legacy_spot_fallback,
        "on-demand fallback group uses WorkersOnDemandLaunchConfiguration, which bids for spot",
    ),
]


@pytest.mark.parametrize(
    ("make_env", "mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_catches_broken_template(
    make_env: Callable[[], Environment], mutate: Mutation, expected: str
) -> None:
    env = make_env()
    document = rendered(env)
    assert check_template(document, env) == []
    mutate(document)
    problems = check_template(document, env)
    assert problems, "the broken template passed"
    assert any(expected in p for p in problems), problems


def test_verify_refuses_broken_template_before_anything_else() -> None:
    env = environment()
    document = rendered(env)
    latest_version(document)
    with pytest.raises(TemplateError, match=r"\$Latest"):
        verify_template(document, FleetBlueprint(env).body(), env)


MATRIX = [
    (name, mode) for name in ("local", "staging", "prod") for mode in ("template", "configuration")
]


@pytest.mark.parametrize(("name", "mode"), MATRIX, ids=[f"{n}-{m}" for n, m in MATRIX])
def test_shipped_environments_pass_cfn_lint_and_our_rules(name: str, mode: str) -> None:
    env = environment(name) if mode == "template" else legacy(name)
    blueprint = FleetBlueprint(env)
    assert check_template(blueprint.to_dict(), env) == []
    assert lint_template(blueprint.render(), env.region) == []
    verify_template(blueprint.to_dict(), blueprint.body(), env)


def test_cfn_lint_findings_are_reported() -> None:
    env = environment()
    document = rendered(env)
    document["Resources"]["WorkersSpotGroup"]["Properties"]["MaxSize"] = "lots"

    findings = lint_template(json.dumps(document), env.region)
    assert any("WorkersSpotGroup/Properties/MaxSize" in f and f.startswith("E") for f in findings)
    with pytest.raises(LintError):
        verify_template(document, json.dumps(document), env)
