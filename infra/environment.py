"""Environment files (`infra/environments/<name>.toml`): one pydantic model, no unknown keys."""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetkit.autoscaler.settings import AutoscalerSettings, ScalingSettings
from fleetkit.infra.errors import ConfigError

__all__ = [
    "ENVIRONMENTS_DIR",
    "REDIS_URL_VARIABLE",
    "ArtifactSettings",
    "AutoscalerInstanceSettings",
    "Environment",
    "LaunchMode",
    "NetworkSettings",
    "OnDemandSettings",
    "PoolSettings",
    "RedisSettings",
    "SpotAllocationStrategy",
    "SpotSettings",
    "environment_path",
    "load_environment",
]

ENVIRONMENTS_DIR = Path(__file__).parent / "environments"
REDIS_URL_VARIABLE = "FLEETKIT_REDIS_URL"

_NAME = r"^[a-z][a-z0-9-]{0,23}$"
_AMI = r"^(ami-[0-9a-f]{8,17}|/[A-Za-z0-9_./-]+)$"
_INSTANCE_TYPE = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
_REGION = r"^[a-z]{2}(-[a-z]+)+-\d$"
_SUBNET = r"^subnet-[0-9a-f]{8,17}$"
_CIDR = r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$"
_RESERVED_POOL_NAMES = {"autoscaler"}


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

    subnets: (
        Literal["default"]
        | Annotated[list[Annotated[str, Field(pattern=_SUBNET)]], Field(min_length=1)]
    ) = "default"
    ssh_cidr: str | None = Field(default=None, pattern=_CIDR)


class ArtifactSettings(_Model):
    """The bucket holding versioned packages; created by the stack unless named here."""

    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class AutoscalerInstanceSettings(AutoscalerSettings):
    """The single on-demand instance that runs `autoscaler run`, and how the daemon ticks."""

    instance_type: str = Field(default="t3.micro", pattern=_INSTANCE_TYPE)
    ami: str = Field(
        default="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        pattern=_AMI,
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
    instance_types: list[Annotated[str, Field(pattern=_INSTANCE_TYPE)]] = Field(min_length=1)
    ami: str = Field(pattern=_AMI)
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


class Environment(_Model):
    """Everything one deployment of fleetkit needs; `source` is the file it came from."""

    name: str = Field(pattern=_NAME)
    region: str = Field(pattern=_REGION)
    stack_name: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    termination_protection: bool = False
    redis: RedisSettings = RedisSettings()
    network: NetworkSettings = NetworkSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    autoscaler: AutoscalerInstanceSettings = AutoscalerInstanceSettings()
    pools: dict[str, PoolSettings] = Field(min_length=1)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, value: dict[str, PoolSettings]) -> dict[str, PoolSettings]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"pool name {name!r} must match {_NAME}")
            if name in _RESERVED_POOL_NAMES:
                raise ValueError(f"pool name {name!r} is reserved")
        return value

    @property
    def stack(self) -> str:
        return self.stack_name or f"fleetkit-{self.name}"

    def redis_url(self, environ: dict[str, str] | None = None) -> str | None:
        """The Redis URL every command uses: FLEETKIT_REDIS_URL, else the file's url.

        Returns None when the file names an SSM parameter instead; `infra.aws` resolves that.
        """
        env = os.environ if environ is None else environ
        return env.get(REDIS_URL_VARIABLE) or self.redis.url


def environment_path(ref: str) -> Path:
    """`staging` → the shipped file; anything ending in .toml or holding a slash → that path."""
    if ref.endswith(".toml") or os.sep in ref or "/" in ref:
        return Path(ref)
    if not re.match(_NAME, ref):
        raise ConfigError(f"--env {ref!r}: not an environment name or a path to a .toml file")
    return ENVIRONMENTS_DIR / f"{ref}.toml"


def load_environment(ref: str) -> Environment:
    """Load and validate an environment; every problem is one ConfigError line naming the file."""
    path = environment_path(ref)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in ENVIRONMENTS_DIR.glob("*.toml")))
        raise ConfigError(f"{path}: no such environment file (shipped: {known})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    raw.setdefault("name", path.stem)
    try:
        return Environment.model_validate({**raw, "source": path})
    except ValidationError as exc:
        raise ConfigError(_one_line(path, exc)) from None


def _one_line(path: Path, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] != "missing" and not isinstance(first["input"], dict):
        message += f" (got {first['input']!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {key}: {message}{more}"
