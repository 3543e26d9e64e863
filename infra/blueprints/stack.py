"""The whole environment as one CloudFormation stack, rendered deterministically."""

from __future__ import annotations

import json
from typing import Any

import yaml
from troposphere import Template

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints.autoscaler import add_autoscaler_group
from fleetkit.infra.blueprints.network import add_network
from fleetkit.infra.blueprints.pool import add_pool
from fleetkit.infra.blueprints.storage import add_artifact_bucket

__all__ = ["FleetBlueprint"]


class FleetBlueprint:
    """Inputs are one validated Environment; `build` makes the template, `render` its text."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def build(self) -> Template:
        env = self.env
        template = Template(
            Description=f"fleetkit {env.name}: spot worker pools with on-demand fallback"
        )
        template.set_version("2010-09-09")
        bucket = add_artifact_bucket(template, env)
        security_group = add_network(template, env)
        for pool in sorted(env.pools):
            add_pool(
                template,
                env,
                pool,
                env.pools[pool],
                bucket=bucket,
                security_group=security_group,
            )
        add_autoscaler_group(template, env, bucket=bucket, security_group=security_group)
        return template

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = self.build().to_dict()
        return result

    def render(self, fmt: str = "json") -> str:
        """Same environment → same bytes: keys sorted, no timestamps, no randomness."""
        document = self.to_dict()
        if fmt == "yaml":
            return yaml.safe_dump(document, sort_keys=True, default_flow_style=False, width=100)
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    def body(self) -> str:
        """Compact JSON for the CloudFormation API (51,200-byte TemplateBody limit)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
