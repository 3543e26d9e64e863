"""One worker pool: its launch template (or legacy launch configurations), a spot group and an
on-demand fallback group, both with launching and terminating lifecycle hooks.

Neither group sets DesiredCapacity: CloudFormation would reset live capacity on every update,
and the autoscaler owns it.
"""

from __future__ import annotations

from troposphere import GetAtt, Output, Ref, Template
from troposphere.autoscaling import (
    AutoScalingGroup,
    InstancesDistribution,
    LaunchConfiguration,
    LaunchTemplateOverrides,
    LaunchTemplateSpecification,
    LifecycleHookSpecification,
    MixedInstancesPolicy,
)
from troposphere.autoscaling import BlockDeviceMapping as LcBlockDeviceMapping
from troposphere.autoscaling import EBSBlockDevice as LcBlockDevice
from troposphere.autoscaling import LaunchTemplate as GroupLaunchTemplate
from troposphere.autoscaling import MetadataOptions as LcMetadataOptions
from troposphere.ec2 import (
    EBSBlockDevice,
    IamInstanceProfile,
    LaunchTemplate,
    LaunchTemplateBlockDeviceMapping,
    LaunchTemplateData,
    MetadataOptions,
    TagSpecifications,
)
from troposphere.ec2 import Tags as Ec2Tags

from fleetkit.core.environment import Environment
from fleetkit.core.settings import LaunchMode, PoolSettings
from fleetkit.infra.blueprints.common import (
    LAUNCHING_HOOK,
    ROLE_WORKER,
    SUBNETS_PARAMETER,
    TAG_CAPACITY,
    TAG_ENV,
    TAG_POOL,
    TAG_ROLE,
    TERMINATING_HOOK,
    Capacity,
    artifact_prefix,
    image_parameter,
    logical_name,
)
from fleetkit.infra.blueprints.iam import InstanceIdentity, add_worker_role
from fleetkit.infra.blueprints.userdata import pointer_user_data

__all__ = ["add_pool", "group_tags", "imdsv2_template_data"]

# A launch configuration is the only way some older accounts run spot; cfn-lint flags it as
# deprecated (W3697). It is used only when an environment asks for launch_mode = "configuration".
_LEGACY_LINT_METADATA = {"cfn-lint": {"config": {"ignore_checks": ["W3697"]}}}


def group_tags(env: str, pool: str, role: str, capacity: Capacity) -> list[dict[str, object]]:
    """Group tags, propagated to every instance the group launches."""
    values = {TAG_ENV: env, TAG_POOL: pool, TAG_ROLE: role, TAG_CAPACITY: capacity.value}
    return [{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in sorted(values.items())]


def imdsv2_template_data(
    *,
    image: Ref,
    identity: InstanceIdentity,
    security_group: object,
    user_data: object,
    device_name: str,
    volume_gb: int,
    env: str,
    instance_type: str | None = None,
) -> LaunchTemplateData:
    """Launch template data every fleetkit instance shares: IMDSv2 only, encrypted gp3 root."""
    data = LaunchTemplateData(
        ImageId=image,
        IamInstanceProfile=IamInstanceProfile(Arn=GetAtt(identity.profile, "Arn")),
        SecurityGroupIds=[security_group],
        # Hop limit 1: containers on the host cannot reach the instance's credentials.
        MetadataOptions=MetadataOptions(
            HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1
        ),
        BlockDeviceMappings=[
            LaunchTemplateBlockDeviceMapping(
                DeviceName=device_name,
                Ebs=EBSBlockDevice(
                    VolumeType="gp3",
                    VolumeSize=volume_gb,
                    Encrypted=True,
                    DeleteOnTermination=True,
                ),
            )
        ],
        UserData=user_data,
        TagSpecifications=[TagSpecifications(ResourceType="volume", Tags=Ec2Tags({TAG_ENV: env}))],
    )
    if instance_type:
        data.InstanceType = instance_type
    return data


def _hooks(settings: PoolSettings) -> list[LifecycleHookSpecification]:
    return [
        # No ready signal within the timeout: the instance is broken, replace it.
        LifecycleHookSpecification(
            LifecycleHookName=LAUNCHING_HOOK,
            LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING",
            DefaultResult="ABANDON",
            HeartbeatTimeout=settings.launch_timeout_s,
        ),
        # The worker hands its jobs back, then completes this; at timeout, terminate anyway.
        LifecycleHookSpecification(
            LifecycleHookName=TERMINATING_HOOK,
            LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
            DefaultResult="CONTINUE",
            HeartbeatTimeout=settings.drain_timeout_s,
        ),
    ]


def _template_mode_sources(
    template: Template,
    settings: PoolSettings,
    logical: str,
    data: LaunchTemplateData,
) -> tuple[MixedInstancesPolicy, MixedInstancesPolicy]:
    """Mixed-instances policies for the spot group and the on-demand fallback group."""
    launch_template = template.add_resource(
        LaunchTemplate(f"{logical}LaunchTemplate", LaunchTemplateData=data)
    )
    spec = LaunchTemplateSpecification(
        LaunchTemplateId=Ref(launch_template),
        Version=GetAtt(launch_template, "LatestVersionNumber"),
    )
    overrides = [LaunchTemplateOverrides(InstanceType=t) for t in settings.instance_types]
    spot = InstancesDistribution(
        OnDemandBaseCapacity=0,
        # The API default is 100 (all on-demand): spot needs an explicit 0.
        OnDemandPercentageAboveBaseCapacity=0,
        SpotAllocationStrategy=settings.spot.allocation_strategy.value,
    )
    if settings.spot.max_price is not None:
        spot.SpotMaxPrice = str(settings.spot.max_price)
    on_demand = InstancesDistribution(
        OnDemandBaseCapacity=0,
        OnDemandPercentageAboveBaseCapacity=100,
        OnDemandAllocationStrategy="prioritized",
    )
    return (
        MixedInstancesPolicy(
            InstancesDistribution=spot,
            LaunchTemplate=GroupLaunchTemplate(
                LaunchTemplateSpecification=spec, Overrides=overrides
            ),
        ),
        MixedInstancesPolicy(
            InstancesDistribution=on_demand,
            LaunchTemplate=GroupLaunchTemplate(
                LaunchTemplateSpecification=spec, Overrides=overrides
            ),
        ),
    )


def _launch_configuration(
    template: Template,
    name: str,
    settings: PoolSettings,
    image: Ref,
    identity: InstanceIdentity,
    security_group: object,
    user_data: object,
    spot_price: str | None,
) -> LaunchConfiguration:
    configuration = LaunchConfiguration(
        name,
        Metadata=_LEGACY_LINT_METADATA,
        ImageId=image,
        # A launch configuration holds one instance type: the first of the pool's list.
        InstanceType=settings.instance_types[0],
        IamInstanceProfile=Ref(identity.profile),
        SecurityGroups=[security_group],
        MetadataOptions=LcMetadataOptions(
            HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1
        ),
        BlockDeviceMappings=[
            LcBlockDeviceMapping(
                DeviceName=settings.root_device_name,
                Ebs=LcBlockDevice(
                    VolumeType="gp3",
                    VolumeSize=settings.root_volume_gb,
                    Encrypted=True,
                    DeleteOnTermination=True,
                ),
            )
        ],
        UserData=user_data,
    )
    if spot_price is not None:
        configuration.SpotPrice = spot_price
    return template.add_resource(configuration)


def add_pool(
    template: Template,
    env: Environment,
    pool: str,
    settings: PoolSettings,
    *,
    bucket: object,
    security_group: object,
) -> None:
    """Add every resource of one pool and its outputs."""
    logical = logical_name(pool)
    identity = add_worker_role(template, env, pool, logical, bucket)
    image = Ref(image_parameter(template, f"{logical}ImageId", settings.ami, f"{pool} workers"))
    user_data = pointer_user_data(
        env=env.name,
        pool=pool,
        role=ROLE_WORKER,
        stack=env.stack,
        region=env.region,
        bucket=bucket,
        prefix=artifact_prefix(env.name),
    )
    common = {
        "VPCZoneIdentifier": Ref(SUBNETS_PARAMETER),
        "LifecycleHookSpecificationList": _hooks(settings),
        "HealthCheckType": "EC2",
    }
    if settings.launch_mode is LaunchMode.TEMPLATE:
        data = imdsv2_template_data(
            image=image,
            identity=identity,
            security_group=security_group,
            user_data=user_data,
            device_name=settings.root_device_name,
            volume_gb=settings.root_volume_gb,
            env=env.name,
        )
        spot_policy, on_demand_policy = _template_mode_sources(template, settings, logical, data)
        spot_source: dict[str, object] = {
            "MixedInstancesPolicy": spot_policy,
            # Replace an instance at elevated risk before AWS reclaims it.
            "CapacityRebalance": True,
        }
        on_demand_source: dict[str, object] = {"MixedInstancesPolicy": on_demand_policy}
    else:
        bid = str(settings.spot.max_price)
        spot_lc = _launch_configuration(
            template,
            f"{logical}SpotLaunchConfiguration",
            settings,
            image,
            identity,
            security_group,
            user_data,
            spot_price=bid,
        )
        on_demand_lc = _launch_configuration(
            template,
            f"{logical}OnDemandLaunchConfiguration",
            settings,
            image,
            identity,
            security_group,
            user_data,
            spot_price=None,
        )
        spot_source = {"LaunchConfigurationName": Ref(spot_lc)}
        on_demand_source = {"LaunchConfigurationName": Ref(on_demand_lc)}

    spot_group = template.add_resource(
        AutoScalingGroup(
            f"{logical}SpotGroup",
            MinSize=str(settings.min_size),
            MaxSize=str(settings.max_size),
            Tags=group_tags(env.name, pool, ROLE_WORKER, Capacity.SPOT),
            **common,
            **spot_source,
        )
    )
    # Min 0 and no desired: the autoscaler moves a spot shortfall here and back.
    on_demand_group = template.add_resource(
        AutoScalingGroup(
            f"{logical}OnDemandGroup",
            MinSize="0",
            MaxSize=str(settings.on_demand_max_size),
            Tags=group_tags(env.name, pool, ROLE_WORKER, Capacity.ON_DEMAND),
            **common,
            **on_demand_source,
        )
    )
    template.add_output(Output(f"{logical}SpotGroupName", Value=Ref(spot_group)))
    template.add_output(Output(f"{logical}OnDemandGroupName", Value=Ref(on_demand_group)))
