"""Autoscaler settings, composed into the environment file's models (`infra.environment`).

`ScalingSettings` is per pool (`[pools.<name>.scaling]`); `AutoscalerSettings` is the daemon's own
(`[autoscaler]`, beside where the autoscaler instance runs).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AutoscalerSettings", "ScalingSettings"]


class ScalingSettings(BaseModel):
    """What the policy needs to size one pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


class AutoscalerSettings(BaseModel):
    """How the daemon ticks and where it reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
