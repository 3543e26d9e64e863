"""Builders for environments and rendered templates used across infra tests."""

from __future__ import annotations

import copy
from typing import Any

from fleetkit.core.environment import Environment, load_environment
from fleetkit.infra.blueprints import FleetBlueprint


def environment(name: str = "staging", **pool_changes: Any) -> Environment:
    """A shipped environment with settings of its `workers` pool replaced."""
    env = load_environment(name)
    raw = env.model_dump(mode="python", exclude={"source"})
    workers = raw["pools"]["workers"]
    for key, value in pool_changes.items():
        if isinstance(value, dict):
            workers[key] = {**workers[key], **value}
        else:
            workers[key] = value
    return Environment.model_validate(raw)


def legacy(name: str = "staging") -> Environment:
    return environment(name, launch_mode="configuration", spot={"max_price": "0.05"})


def rendered(env: Environment) -> dict[str, Any]:
    return copy.deepcopy(FleetBlueprint(env).to_dict())


def resources_of(document: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in document["Resources"].items() if v["Type"] == kind}
