"""The autoscaler's errors: one base, so callers can catch everything of ours at once.

AutoscalerError
├── UsageError          bad input from a user (unknown pool, N out of range): exit 2
├── SourceUnavailable   Redis could not be read: keep capacity, report it
├── CapacityUnavailable AWS could not be read or changed after retries: keep capacity
└── NotLeader           another daemon holds the lock (or ours lapsed): do not act
"""

from __future__ import annotations

__all__ = [
    "AutoscalerError",
    "CapacityUnavailable",
    "NotLeader",
    "SourceUnavailable",
    "UsageError",
]


class AutoscalerError(Exception):
    """Base of every error the autoscaler raises on purpose."""


class UsageError(AutoscalerError):
    """The user asked for something impossible; the message names the value."""


class SourceUnavailable(AutoscalerError):
    """The queue depth source (Redis) could not be read."""


class CapacityUnavailable(AutoscalerError):
    """Auto Scaling could not be read or changed."""


class NotLeader(AutoscalerError):
    """This daemon does not hold the leader lock."""
