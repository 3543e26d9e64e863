"""Network inputs (VPC and subnets, resolved at deploy) and the instances' security group."""

from __future__ import annotations

from troposphere import GetAtt, Parameter, Ref, Tags, Template
from troposphere.ec2 import SecurityGroup, SecurityGroupRule

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints.common import SUBNETS_PARAMETER, TAG_ENV, VPC_PARAMETER

__all__ = ["add_network"]


def add_network(template: Template, env: Environment) -> GetAtt:
    """Add the VPC/subnet parameters and the security group; returns the group id."""
    vpc = template.add_parameter(
        Parameter(VPC_PARAMETER, Type="AWS::EC2::VPC::Id", Description="VPC of the subnets")
    )
    template.add_parameter(
        Parameter(
            SUBNETS_PARAMETER,
            Type="List<AWS::EC2::Subnet::Id>",
            Description="Subnets every group launches into",
        )
    )
    ingress = []
    if env.network.ssh_cidr:
        ingress.append(
            SecurityGroupRule(
                IpProtocol="tcp",
                FromPort=22,
                ToPort=22,
                CidrIp=env.network.ssh_cidr,
                Description="SSH for fabric-run cookbooks",
            )
        )
    group = template.add_resource(
        SecurityGroup(
            "InstanceSecurityGroup",
            GroupDescription=f"fleetkit {env.name} instances: no ingress unless ssh_cidr is set",
            VpcId=Ref(vpc),
            SecurityGroupIngress=ingress,
            # Workers reach Redis, S3 and the AWS APIs: outbound stays open.
            SecurityGroupEgress=[
                SecurityGroupRule(
                    IpProtocol="-1", CidrIp="0.0.0.0/0", Description="all outbound traffic"
                )
            ],
            Tags=Tags({TAG_ENV: env.name}),
        )
    )
    return GetAtt(group, "GroupId")
