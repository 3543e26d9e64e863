"""The autoscaler's errors, under fleetkit's one root (`fleetkit.core.errors`).

FleetkitError
└── AutoscalerError
    ├── SourceUnavailable   the queue depth source (Redis) could not be read: keep capacity
    ├── CapacityUnavailable AWS could not be read or changed after retries: keep capacity
    └── NotLeader           another daemon holds the lock (or ours lapsed): do not act

Bad input is core's `UsageError` (exit 2); an environment that is not deployed, core's
`NotDeployed` (exit 3).
"""

from __future__ import annotations

from fleetkit.core.errors import FleetkitError

__all__ = ["AutoscalerError", "CapacityUnavailable", "NotLeader", "SourceUnavailable"]


class AutoscalerError(FleetkitError):
    """Base of every error the autoscaler raises on purpose."""


class SourceUnavailable(AutoscalerError):
    """The queue depth source (Redis) could not be read."""


class CapacityUnavailable(AutoscalerError):
    """Auto Scaling could not be read or changed."""


class NotLeader(AutoscalerError):
    """This daemon does not hold the leader lock."""
