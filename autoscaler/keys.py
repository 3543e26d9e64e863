"""Redis key names the autoscaler owns, scoped by environment (the workers' keys are global)."""

from __future__ import annotations

__all__ = ["hold_key", "leader_key", "members_key", "record_key"]


def hold_key(env: str, pool: str) -> str:
    return f"fleetkit:{env}:hold:{pool}"


def leader_key(env: str) -> str:
    return f"fleetkit:{env}:autoscaler:leader"


def record_key(env: str, pool: str) -> str:
    """The last decision for a pool, with the policy's memory, for `status` and a new leader."""
    return f"fleetkit:{env}:autoscaler:pool:{pool}"


def members_key(env: str) -> str:
    """The instances the leader has seen in the environment's groups (→ when), as JSON."""
    return f"fleetkit:{env}:autoscaler:members"
