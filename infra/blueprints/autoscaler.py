"""The autoscaler's own group: exactly one on-demand instance running `autoscaler run`."""

from __future__ import annotations

from troposphere import GetAtt, Output, Ref, Template
from troposphere.autoscaling import AutoScalingGroup, LaunchTemplateSpecification
from troposphere.ec2 import LaunchTemplate

from fleetkit.core.environment import Environment
from fleetkit.infra.blueprints.common import (
    ROLE_AUTOSCALER,
    SUBNETS_PARAMETER,
    Capacity,
    artifact_prefix,
    image_parameter,
)
from fleetkit.infra.blueprints.iam import add_autoscaler_role
from fleetkit.infra.blueprints.pool import group_tags, imdsv2_template_data
from fleetkit.infra.blueprints.userdata import pointer_user_data

__all__ = ["add_autoscaler_group"]


def add_autoscaler_group(
    template: Template, env: Environment, *, bucket: object, security_group: object
) -> None:
    settings = env.autoscaler
    identity = add_autoscaler_role(template, env, bucket)
    image = Ref(image_parameter(template, "AutoscalerImageId", settings.ami, "autoscaler"))
    launch_template = template.add_resource(
        LaunchTemplate(
            "AutoscalerLaunchTemplate",
            LaunchTemplateData=imdsv2_template_data(
                image=image,
                identity=identity,
                security_group=security_group,
                user_data=pointer_user_data(
                    env=env.name,
                    pool=ROLE_AUTOSCALER,
                    role=ROLE_AUTOSCALER,
                    stack=env.stack,
                    region=env.region,
                    bucket=bucket,
                    prefix=artifact_prefix(env.name),
                ),
                device_name=settings.root_device_name,
                volume_gb=8,
                env=env.name,
                instance_type=settings.instance_type,
            ),
        )
    )
    group = template.add_resource(
        AutoScalingGroup(
            "AutoscalerGroup",
            # One instance: a replacement comes up if it dies; a leader lock guards overlap.
            MinSize="1",
            MaxSize="1",
            VPCZoneIdentifier=Ref(SUBNETS_PARAMETER),
            HealthCheckType="EC2",
            LaunchTemplate=LaunchTemplateSpecification(
                LaunchTemplateId=Ref(launch_template),
                Version=GetAtt(launch_template, "LatestVersionNumber"),
            ),
            Tags=group_tags(env.name, ROLE_AUTOSCALER, ROLE_AUTOSCALER, Capacity.ON_DEMAND),
        )
    )
    template.add_output(Output("AutoscalerGroupName", Value=Ref(group)))
