"""Checks a rendered template must pass before any deploy.

Our own rules catch what AWS rejects (or what would hurt a live fleet) but neither cfn-lint nor
moto notice; cfn-lint runs on top of them and must report no errors and no warnings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints.common import TAG_CAPACITY, TAG_POOL, Capacity
from fleetkit.infra.errors import LintError, TemplateError
from fleetkit.infra.instance_types import check_instance_types

__all__ = ["TEMPLATE_BODY_LIMIT", "check_template", "lint_template", "verify_template"]

# CloudFormation's limit for an inline TemplateBody.
TEMPLATE_BODY_LIMIT = 51_200
_ASG = "AWS::AutoScaling::AutoScalingGroup"
_UNPINNED_VERSIONS = {"$Latest", "$Default"}
# cfn-lint's "instance type not valid in the region" rule.
_INSTANCE_TYPE_RULE = "E3628"
_LONG_LIST = re.compile(r"\[(?:'[^']*', ){9,}'[^']*'\]")


def _ref(value: object) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def _target(value: object) -> str | None:
    """The logical id behind a {"Ref": X} or {"Fn::GetAtt": [X, ...]}."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return _ref(value)


def _tag(props: dict[str, Any], key: str) -> str | None:
    for tag in props.get("Tags", []):
        if isinstance(tag, dict) and tag.get("Key") == key:
            return str(tag.get("Value"))
    return None


def _as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _check_group(
    name: str, props: dict[str, Any], resources: dict[str, Any], env: Environment | None
) -> list[str]:
    problems: list[str] = []
    low, high = _as_int(props.get("MinSize")), _as_int(props.get("MaxSize"))
    if low is not None and high is not None and low > high:
        problems.append(f"{name}: MinSize {low} is above MaxSize {high}")
    if "DesiredCapacity" in props:
        problems.append(
            f"{name}: DesiredCapacity is set; every stack update would reset live capacity "
            "(the autoscaler owns it)"
        )
    mixed = props.get("MixedInstancesPolicy")
    specs = []
    if "LaunchTemplate" in props:
        specs.append(props["LaunchTemplate"])
    if mixed:
        specs.append(mixed.get("LaunchTemplate", {}).get("LaunchTemplateSpecification", {}))
    for spec in specs:
        version = spec.get("Version")
        if isinstance(version, str) and version in _UNPINNED_VERSIONS:
            problems.append(
                f"{name}: launch template version {version!r} is not allowed; "
                "use Fn::GetAtt [template, LatestVersionNumber]"
            )
    if mixed:
        spec = mixed.get("LaunchTemplate", {}).get("LaunchTemplateSpecification", {})
        template_id = _target(spec.get("LaunchTemplateId"))
        template = resources.get(template_id or "", {}).get("Properties", {})
        if "InstanceMarketOptions" in template.get("LaunchTemplateData", {}):
            problems.append(
                f"{name}: launch template {template_id} requests spot (InstanceMarketOptions) "
                "inside a MixedInstancesPolicy; AWS rejects it as an incompatible launch template"
            )
        distribution = mixed.get("InstancesDistribution", {})
        percentage = _as_int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100))
        if _tag(props, TAG_CAPACITY) == Capacity.SPOT and percentage != 0:
            problems.append(
                f"{name}: spot group has OnDemandPercentageAboveBaseCapacity {percentage}; "
                "it must be 0 (the API default 100 launches on-demand only)"
            )
    configuration_name = _ref(props.get("LaunchConfigurationName"))
    if configuration_name:
        configuration = resources.get(configuration_name, {}).get("Properties", {})
        problems += _check_legacy(name, props, configuration_name, configuration, env)
    return problems


def _check_legacy(
    name: str,
    props: dict[str, Any],
    configuration_name: str,
    configuration: dict[str, Any],
    env: Environment | None,
) -> list[str]:
    capacity = _tag(props, TAG_CAPACITY)
    price = configuration.get("SpotPrice")
    if capacity == Capacity.ON_DEMAND and price is not None:
        return [f"{name}: on-demand fallback group uses {configuration_name}, which bids for spot"]
    if capacity != Capacity.SPOT or env is None:
        return []
    pool = env.pools.get(_tag(props, TAG_POOL) or "")
    if pool is None or pool.spot.max_price is None:
        return []
    bid = str(pool.spot.max_price)
    if price is None:
        return [f"{name}: launch configuration {configuration_name} has no SpotPrice; bid {bid}"]
    if str(price) != bid:
        return [f"{name}: launch configuration {configuration_name} SpotPrice {price} != bid {bid}"]
    return []


def check_template(document: dict[str, Any], env: Environment | None = None) -> list[str]:
    """Our own rules over a rendered template; an empty list means it passes."""
    resources: dict[str, Any] = document.get("Resources", {})
    problems: list[str] = []
    for name in sorted(resources):
        resource = resources[name]
        if resource.get("Type") == _ASG:
            problems += _check_group(name, resource.get("Properties", {}), resources, env)
    return problems


def lint_template(
    body: str, region: str, *, extra_instance_types: Collection[str] = ()
) -> list[str]:
    """cfn-lint errors and warnings (informational matches are not failures).

    `extra_instance_types` are accepted where cfn-lint checks an instance type against its own
    list (E3628): the environment's override for types newer than the installed data.
    """
    from cfnlint.api import ManualArgs, lint  # heavy import: only when linting

    matches = lint(body, config=ManualArgs(regions=[region]))
    document: Any = None
    findings = []
    for m in matches:
        if m.rule.id[0] not in "EW":
            continue
        if m.rule.id == _INSTANCE_TYPE_RULE and extra_instance_types:
            document = json.loads(body) if document is None else document
            if _value_at(document, m.path) in extra_instance_types:
                continue
        findings.append(f"{m.rule.id} {'/'.join(str(p) for p in m.path)}: {_short(m.message)}")
    return findings


def _value_at(document: Any, path: list[str | int]) -> object:
    for key in path:
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            return None
    return document


def _short(message: str) -> str:
    """A finding with its list of every allowed value (E3628 lists ~1000 instance types) cut
    to a count: one line a user can read."""
    return _LONG_LIST.sub(lambda m: f"[{m.group(0).count(',') + 1} values]", message)


def verify_template(document: dict[str, Any], body: str, env: Environment) -> None:
    """Raise unless the environment's instance types are known to EC2 and the template passes
    our rules, cfn-lint and the size limit."""
    check_instance_types(env)
    problems = check_template(document, env)
    if problems:
        raise TemplateError(problems)
    if len(body.encode()) > TEMPLATE_BODY_LIMIT:
        raise TemplateError(
            [
                f"template is {len(body.encode())} bytes, above CloudFormation's inline limit "
                f"of {TEMPLATE_BODY_LIMIT}; split pools across environments"
            ]
        )
    findings = lint_template(body, env.region, extra_instance_types=env.extra_instance_types)
    if findings:
        raise LintError(findings)
