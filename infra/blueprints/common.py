"""Names shared by every stack piece: tag keys, logical ids, parameters."""

from __future__ import annotations

from troposphere import Parameter, Sub, Template

from fleetkit.core.tags import (
    LAUNCHING_HOOK,
    ROLE_AUTOSCALER,
    ROLE_WORKER,
    TAG_CAPACITY,
    TAG_ENV,
    TAG_POOL,
    TAG_ROLE,
    TERMINATING_HOOK,
    Capacity,
)

__all__ = [
    "LAUNCHING_HOOK",
    "ROLE_AUTOSCALER",
    "ROLE_WORKER",
    "SUBNETS_PARAMETER",
    "TAG_CAPACITY",
    "TAG_ENV",
    "TAG_POOL",
    "TAG_ROLE",
    "TERMINATING_HOOK",
    "VPC_PARAMETER",
    "Capacity",
    "artifact_prefix",
    "asg_arn_pattern",
    "image_parameter",
    "logical_name",
]

VPC_PARAMETER = "VpcId"
SUBNETS_PARAMETER = "SubnetIds"


def artifact_prefix(env: str) -> str:
    """Key prefix of one environment's artifacts inside the bucket."""
    return f"fleetkit/{env}/"


def logical_name(name: str) -> str:
    """`batch-high` → `BatchHigh`: a pool name as a CloudFormation logical id prefix."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def image_parameter(template: Template, logical: str, ami: str, what: str) -> Parameter:
    """An AMI as a parameter: a literal id, or an SSM public parameter path resolved by CFN."""
    kind = (
        "AWS::EC2::Image::Id"
        if ami.startswith("ami-")
        else "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    )
    return template.add_parameter(
        Parameter(logical, Type=kind, Default=ami, Description=f"AMI of the {what}")
    )


def asg_arn_pattern() -> Sub:
    """Every Auto Scaling group of this account and region; narrowed by tag conditions."""
    return Sub(
        "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}"
        ":autoScalingGroup:*:autoScalingGroupName/*"
    )
