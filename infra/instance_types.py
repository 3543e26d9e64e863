"""The instance types an environment names, checked before anything is deployed.

cfn-lint checks a launch template's `InstanceType`, but not the overrides of a
MixedInstancesPolicy, where the pools list theirs: a typo there passed `validate` and reached
AWS. Two checks, each a line per bad type naming the key and the value (exit 2):

- offline (`validate`, and before every diff or deploy): the EC2 `InstanceType` enum of the
  installed botocore's service model, plus the environment's `extra_instance_types` for types
  newer than that botocore;
- online (`diff`, `deploy`): the region's offerings (DescribeInstanceTypeOfferings).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore

from fleetkit.core.aws import aws_errors
from fleetkit.core.environment import Environment
from fleetkit.core.errors import ConfigError

__all__ = [
    "InstanceTypeUse",
    "check_instance_types",
    "check_offered",
    "instance_type_uses",
    "known_instance_types",
    "unknown_instance_types",
    "unoffered_instance_types",
]

# Close enough to be a typo (m7i.lrage → m7i.large), not merely the same shape (zz9 → z1d).
_HINT_CUTOFF = 0.8


@dataclass(frozen=True)
class InstanceTypeUse:
    key: str  # where the environment file names it: pools.workers.instance_types.1
    name: str


def instance_type_uses(env: Environment) -> list[InstanceTypeUse]:
    """Every instance type the stack would launch, with the key naming it."""
    uses = [InstanceTypeUse("autoscaler.instance_type", env.autoscaler.instance_type)]
    for pool, settings in env.pools.items():
        uses += [
            InstanceTypeUse(f"pools.{pool}.instance_types.{index}", name)
            for index, name in enumerate(settings.instance_types)
        ]
    return uses


@cache
def known_instance_types() -> frozenset[str]:
    """The EC2 `InstanceType` enum of the installed botocore (offline; read once, 60 to 180 ms,
    which is why reading an environment does not do it)."""
    from botocore.loaders import create_loader

    model = create_loader().load_service_model("ec2", "service-2")
    return frozenset(model["shapes"]["InstanceType"]["enum"])


def unknown_instance_types(env: Environment, known: frozenset[str]) -> list[str]:
    """A line per type neither in `known` nor in the environment's `extra_instance_types`."""
    accepted = known | set(env.extra_instance_types)
    choices = sorted(known)
    lines = []
    for use in instance_type_uses(env):
        if use.name in accepted:
            continue
        near = difflib.get_close_matches(use.name, choices, n=1, cutoff=_HINT_CUTOFF)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        lines.append(
            f"{env.source or env.name}: {use.key}: {use.name!r} is not an EC2 instance type"
            f"{hint} (a type newer than botocore {botocore.__version__} goes in "
            "extra_instance_types)"
        )
    return lines


def check_instance_types(env: Environment) -> None:
    """Raise a ConfigError, a line per unknown type, unless botocore (or the override) knows
    every type the environment names."""
    lines = unknown_instance_types(env, known_instance_types())
    if lines:
        raise ConfigError("\n".join(lines))


def unoffered_instance_types(env: Environment, offered: set[str]) -> list[str]:
    """A line per type the environment's region does not offer."""
    return [
        f"{env.source or env.name}: {use.key}: {use.name!r} is not offered in region {env.region}"
        for use in instance_type_uses(env)
        if use.name not in offered
    ]


def check_offered(env: Environment, ec2: Any) -> None:
    """Raise a ConfigError, a line per type, unless the region offers every type named."""
    names = sorted({use.name for use in instance_type_uses(env)})
    with aws_errors(f"listing the instance types offered in {env.region}"):
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="region", Filters=[{"Name": "instance-type", "Values": names}]
        )
        offered = {o["InstanceType"] for page in pages for o in page["InstanceTypeOfferings"]}
    lines = unoffered_instance_types(env, offered)
    if lines:
        raise ConfigError("\n".join(lines))
