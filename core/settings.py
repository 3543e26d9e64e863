"""The sections of an environment file, one pydantic model each, no unknown keys.

| section | model | read by |
|---|---|---|
| `[redis]` | `RedisSettings` | workers, the autoscaler |
| `[network]` | `NetworkSettings` | `infra` (the stack) |
| `[artifacts]` | `ArtifactSettings` | `infra`, the bootstrap |
| `[autoscaler]` | `AutoscalerInstanceSettings` | the daemon (`AutoscalerSettings`), `infra` |
| `[pools.<name>]` | `PoolSettings` | `infra`, the workers, the autoscaler |
| `[pools.<name>.scaling]` | `ScalingSettings` | the autoscaler's policy |

`fleetkit.core.environment.Environment` composes them.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AMI_PATTERN",
    "INSTANCE_TYPE_PATTERN",
    "NAME_PATTERN",
    "ArtifactSettings",
    "AutoscalerInstanceSettings",
    "AutoscalerSettings",
    "LaunchMode",
    "NetworkSettings",
    "OnDemandSettings",
    "PoolSettings",
    "RedisSettings",
    "ScalingSettings",
    "SpotAllocationStrategy",
    "SpotSettings",
]

# Environment and pool names become stack names, tag values, Redis keys and S3 prefixes.
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,23}$"
AMI_PATTERN = r"^(ami-[0-9a-f]{8,17}|/[A-Za-z0-9_./-]+)$"
# The shape only; `infra validate` checks names against botocore's list of instance types.
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
_SUBNET = r"^subnet-[0-9a-f]{8,17}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LaunchMode(StrEnum):
    TEMPLATE = "template"
    CONFIGURATION = "configuration"  # legacy launch configuration, for older accounts


class SpotAllocationStrategy(StrEnum):
    PRICE_CAPACITY_OPTIMIZED = "price-capacity-optimized"
    CAPACITY_OPTIMIZED = "capacity-optimized"
    CAPACITY_OPTIMIZED_PRIORITIZED = "capacity-optimized-prioritized"
    LOWEST_PRICE = "lowest-price"


class RedisSettings(_Model):
    """Where the queues live: a URL, or an SSM SecureString parameter holding it."""

    url: str | None = Field(default=None, pattern=r"^rediss?://")
    ssm_parameter: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_./-]+$")

    @model_validator(mode="after")
    def _one_source(self) -> RedisSettings:
        if self.url and self.ssm_parameter:
            raise ValueError("set either url or ssm_parameter, not both")
        return self


class NetworkSettings(_Model):
    """Subnets for every group; `"default"` means the default VPC's subnets, resolved at deploy."""

    subnets: Literal["default"] | list[str] = "default"
    ssh_cidr: str | None = None

    @field_validator("subnets", mode="before")
    @classmethod
    def _subnets(cls, value: object) -> object:
        # One message for both shapes, rather than one per member of the union.
        if value == "default":
            return value
        if isinstance(value, list) and value:
            bad = [v for v in value if not isinstance(v, str) or not re.match(_SUBNET, v)]
            if not bad:
                return value
            raise ValueError(f"{bad[0]!r} is not a subnet id (subnet-0123456789abcdef0)")
        raise ValueError(f'must be "default" or a list of subnet ids (got {value!r})')

    @field_validator("ssh_cidr")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            loose = _loose_network(value)
            if loose is not None and str(loose) != value:
                raise ValueError(f"{value!r} has host bits set: the network is {loose}") from None
            raise ValueError(f"{value!r} is not a CIDR block such as 10.0.0.0/16 ({exc})") from None


def _loose_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


class ArtifactSettings(_Model):
    """The bucket holding versioned packages; created by the stack unless named here."""

    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class ScalingSettings(_Model):
    """What the autoscaler's policy needs to size one pool (`[pools.<name>.scaling]`)."""

    # T: a backlog should be drained within this many seconds.
    target_drain_s: float = Field(default=300.0, gt=0, le=86_400)
    # S until measured: the mean job duration before any job of the pool has ended.
    default_job_duration_s: float = Field(default=60.0, gt=0, le=86_400)
    # Scale in only after the lower need has held this long (the highest need in it is kept).
    stabilization_window_s: float = Field(default=300.0, ge=0, le=86_400)
    # Spot short of its desired capacity this long: put the shortfall on on-demand.
    fallback_grace_s: float = Field(default=90.0, ge=0, le=3_600)
    # Arrival and completion rates are measured over this window.
    rate_window_s: float = Field(default=60.0, ge=5, le=3_600)


class AutoscalerSettings(_Model):
    """How the daemon ticks and where it reports (`[autoscaler]`)."""

    interval_s: float = Field(default=10.0, gt=0, le=3_600)
    metrics_port: int | None = Field(default=9101, ge=0, le=65_535)
    metrics_host: str = "0.0.0.0"
    # The leader lock lapses this long after its holder stops renewing it.
    leader_ttl_s: float = Field(default=30.0, ge=2, le=3_600)

    @model_validator(mode="after")
    def _lock_outlives_a_tick(self) -> AutoscalerSettings:
        if self.leader_ttl_s <= self.interval_s:
            raise ValueError(
                f"leader_ttl_s {self.leader_ttl_s:g} must be longer than interval_s "
                f"{self.interval_s:g}, or the lock lapses between ticks"
            )
        return self


class AutoscalerInstanceSettings(AutoscalerSettings):
    """The single on-demand instance that runs `autoscaler run`, and how the daemon ticks."""

    instance_type: str = Field(default="t3.micro", pattern=INSTANCE_TYPE_PATTERN)
    ami: str = Field(
        default="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        pattern=AMI_PATTERN,
    )
    root_device_name: str = "/dev/xvda"


class SpotSettings(_Model):
    allocation_strategy: SpotAllocationStrategy = SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED
    # The bid, in USD per instance-hour. AWS advises leaving it unset (capped at on-demand price).
    max_price: Decimal | None = Field(default=None, gt=0, max_digits=8, decimal_places=5)


class OnDemandSettings(_Model):
    # Max size of the on-demand fallback group; unset means the pool's own max_size.
    max_size: int | None = Field(default=None, ge=0, le=5000)


class PoolSettings(_Model):
    """One pool of identical workers: a spot group plus its on-demand fallback group."""

    queues: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    instance_types: list[Annotated[str, Field(pattern=INSTANCE_TYPE_PATTERN)]] = Field(min_length=1)
    ami: str = Field(pattern=AMI_PATTERN)
    processes_per_instance: int = Field(default=1, ge=1, le=256)
    min_size: int = Field(default=0, ge=0, le=5000)
    max_size: int = Field(ge=0, le=5000)
    launch_mode: LaunchMode = LaunchMode.TEMPLATE
    root_volume_gb: int = Field(default=20, ge=8, le=16384)
    root_device_name: str = "/dev/xvda"
    # A new instance waits in Pending:Wait until its bootstrap reports ready, else is replaced.
    launch_timeout_s: int = Field(default=900, ge=30, le=7200)
    # A terminating instance gets this long to hand back its jobs before it is terminated.
    drain_timeout_s: int = Field(default=600, ge=30, le=7200)
    spot: SpotSettings = SpotSettings()
    on_demand: OnDemandSettings = OnDemandSettings()
    scaling: ScalingSettings = ScalingSettings()

    @field_validator("instance_types")
    @classmethod
    def _unique_types(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("instance types must be unique")
        return value

    @model_validator(mode="after")
    def _sizes_and_mode(self) -> PoolSettings:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} is above max_size {self.max_size}")
        if self.launch_mode is LaunchMode.CONFIGURATION and self.spot.max_price is None:
            raise ValueError(
                "launch_mode 'configuration' needs spot.max_price: a launch configuration "
                "only requests spot through its SpotPrice bid"
            )
        return self

    @property
    def on_demand_max_size(self) -> int:
        return self.max_size if self.on_demand.max_size is None else self.on_demand.max_size
