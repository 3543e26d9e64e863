"""The network an environment's stack is deployed into, resolved through EC2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from fleetkit.core.aws import aws_errors, error_code
from fleetkit.core.environment import Environment
from fleetkit.core.errors import ConfigError

__all__ = ["Network", "resolve_network"]


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_ids: tuple[str, ...]


def resolve_network(env: Environment, ec2: Any) -> Network:
    """`"default"` → the default VPC's default subnets; explicit subnets → their VPC."""
    source = env.source or env.name
    if env.network.subnets == "default":
        with aws_errors("finding the default VPC"):
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise ConfigError(
                f"{source}: network.subnets: 'default' but region {env.region} has no default "
                "VPC; list subnet ids instead"
            )
        vpc_id = vpcs[0]["VpcId"]
        with aws_errors("listing the default VPC's subnets"):
            subnets = ec2.describe_subnets(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]},
                    {"Name": "default-for-az", "Values": ["true"]},
                ]
            )["Subnets"]
        if not subnets:
            raise ConfigError(f"{source}: network.subnets: default VPC {vpc_id} has no subnets")
        return Network(vpc_id, tuple(sorted(s["SubnetId"] for s in subnets)))
    wanted = list(env.network.subnets)
    with aws_errors("looking up network.subnets"):
        try:
            found = ec2.describe_subnets(SubnetIds=wanted)["Subnets"]
        except ClientError as exc:
            if error_code(exc).startswith("InvalidSubnet"):
                raise ConfigError(f"{source}: network.subnets: {exc}") from None
            raise
    vpc_ids = sorted({s["VpcId"] for s in found})
    if len(vpc_ids) != 1:
        raise ConfigError(
            f"{source}: network.subnets: subnets span VPCs {', '.join(vpc_ids)}; use one VPC"
        )
    return Network(vpc_ids[0], tuple(wanted))
