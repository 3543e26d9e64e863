"""The one error root. Every error fleetkit raises on purpose derives from `FleetkitError` and
carries the exit code a CLI leaves with; no module outside a CLI calls `sys.exit`.

FleetkitError                  exit 1
├── ConfigError                exit 2   an environment file or setting is missing or invalid
├── UsageError                 exit 2   bad command-line input (unknown pool, N out of range…)
├── NotDeployed                exit 3   the environment's stack does not exist
├── RedisUnavailable           exit 1   Redis could not be reached or refused a command
├── AwsError                   exit 1   AWS refused a call or could not be reached
├── InfraError                 (fleetkit.infra.errors: templates, lint findings, stacks)
├── AutoscalerError            (fleetkit.autoscaler.errors: sources, capacity, leadership)
└── WorkerError                (fleetkit.worker.errors: worker settings, notices)

Exit 2 always means nothing was touched.
"""

from __future__ import annotations

__all__ = [
    "AwsError",
    "ConfigError",
    "FleetkitError",
    "NotDeployed",
    "RedisUnavailable",
    "UsageError",
]


class FleetkitError(Exception):
    """Base of every error fleetkit raises on purpose; `exit_code` is what a CLI exits with."""

    exit_code = 1


class ConfigError(FleetkitError):
    """An environment file or a setting is missing or invalid; the message names file and key."""

    exit_code = 2


class UsageError(FleetkitError):
    """The user asked for something impossible; the message names the value."""

    exit_code = 2


class NotDeployed(FleetkitError):
    """The environment's stack (or its groups) does not exist."""

    exit_code = 3


class RedisUnavailable(FleetkitError):
    """Redis could not be reached, timed out, or refused a command."""


class AwsError(FleetkitError):
    """AWS refused a call, or could not be reached after botocore's retries."""
