"""Least-privilege roles: one per pool for its workers, one for the autoscaler."""

from __future__ import annotations

from awacs import autoscaling, cloudformation, ec2, s3, ssm
from awacs.aws import Allow, Condition, Policy, Principal, Statement, StringEquals
from awacs.sts import AssumeRole
from troposphere import GetAtt, Output, Ref, Sub, Template
from troposphere.iam import InstanceProfile, Role
from troposphere.iam import Policy as InlinePolicy

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints.common import (
    ROLE_WORKER,
    TAG_ENV,
    TAG_POOL,
    TAG_ROLE,
    artifact_prefix,
    asg_arn_pattern,
)

__all__ = ["InstanceIdentity", "add_autoscaler_role", "add_worker_role"]


class InstanceIdentity:
    """A role and the instance profile that carries it."""

    def __init__(self, role: Role, profile: InstanceProfile) -> None:
        self.role = role
        self.profile = profile


def _common_statements(env: Environment, bucket: object) -> list[Statement]:
    """Read this environment's artifacts and, when it lives in SSM, the Redis URL."""
    statements = [
        Statement(
            Sid="ReadOwnArtifacts",
            Effect=Allow,
            Action=[s3.GetObject, s3.GetObjectVersion],
            Resource=[
                Sub(
                    "arn:${AWS::Partition}:s3:::${Bucket}/" + artifact_prefix(env.name) + "*",
                    Bucket=bucket,
                )
            ],
        )
    ]
    if env.redis.ssm_parameter:
        statements.append(
            Statement(
                Sid="ReadRedisUrl",
                Effect=Allow,
                Action=[ssm.GetParameter],
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
                        + env.redis.ssm_parameter
                    )
                ],
            )
        )
    return statements


def _identity(
    template: Template, logical: str, statements: list[Statement], description: str
) -> InstanceIdentity:
    role = template.add_resource(
        Role(
            f"{logical}Role",
            Description=description,
            AssumeRolePolicyDocument=Policy(
                Version="2012-10-17",
                Statement=[
                    Statement(
                        Effect=Allow,
                        Principal=Principal("Service", ["ec2.amazonaws.com"]),
                        Action=[AssumeRole],
                    )
                ],
            ),
            Policies=[
                InlinePolicy(
                    PolicyName="fleetkit",
                    PolicyDocument=Policy(Version="2012-10-17", Statement=statements),
                )
            ],
        )
    )
    profile = template.add_resource(InstanceProfile(f"{logical}InstanceProfile", Roles=[Ref(role)]))
    template.add_output(Output(f"{logical}RoleArn", Value=GetAtt(role, "Arn")))
    return InstanceIdentity(role, profile)


def add_worker_role(
    template: Template, env: Environment, pool: str, logical: str, bucket: object
) -> InstanceIdentity:
    """Workers may drive lifecycle actions and scale-in protection of their own pool's groups."""
    own_groups = Condition(
        StringEquals(
            {
                f"autoscaling:ResourceTag/{TAG_ENV}": env.name,
                f"autoscaling:ResourceTag/{TAG_POOL}": pool,
            }
        )
    )
    statements = [
        *_common_statements(env, bucket),
        Statement(
            Sid="OwnLifecycleAndProtection",
            Effect=Allow,
            Action=[
                autoscaling.CompleteLifecycleAction,
                autoscaling.RecordLifecycleActionHeartbeat,
                autoscaling.SetInstanceProtection,
            ],
            Resource=[asg_arn_pattern()],
            Condition=own_groups,
        ),
        Statement(
            # Describe calls have no resource-level permissions; the worker needs its group name.
            Sid="FindOwnGroup",
            Effect=Allow,
            Action=[autoscaling.DescribeAutoScalingInstances],
            Resource=["*"],
        ),
    ]
    return _identity(
        template, logical, statements, f"fleetkit {env.name} pool {pool} worker instances"
    )


def add_autoscaler_role(template: Template, env: Environment, bucket: object) -> InstanceIdentity:
    """The autoscaler reads group state and resizes only this environment's worker groups."""
    statements = [
        *_common_statements(env, bucket),
        Statement(
            Sid="ReadFleetState",
            Effect=Allow,
            Action=[
                autoscaling.DescribeAutoScalingGroups,
                autoscaling.DescribeAutoScalingInstances,
                autoscaling.DescribeScalingActivities,
                autoscaling.DescribeLifecycleHooks,
                ec2.DescribeInstances,
                ec2.DescribeSpotPriceHistory,
            ],
            Resource=["*"],
        ),
        Statement(
            Sid="ReadOwnStack",
            Effect=Allow,
            Action=[cloudformation.DescribeStacks, cloudformation.ListStackResources],
            Resource=[
                Sub(
                    "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}"
                    ":stack/${AWS::StackName}/*"
                )
            ],
        ),
        Statement(
            Sid="ResizeOwnWorkerGroups",
            Effect=Allow,
            Action=[
                autoscaling.SetDesiredCapacity,
                autoscaling.TerminateInstanceInAutoScalingGroup,
            ],
            Resource=[asg_arn_pattern()],
            Condition=Condition(
                StringEquals(
                    {
                        f"autoscaling:ResourceTag/{TAG_ENV}": env.name,
                        f"autoscaling:ResourceTag/{TAG_ROLE}": ROLE_WORKER,
                    }
                )
            ),
        ),
    ]
    return _identity(template, "Autoscaler", statements, f"fleetkit {env.name} autoscaler")
