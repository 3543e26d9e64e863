"""Errors of the worker package.

WorkerError                base of every error raised on purpose
└── WorkerConfigError      bad settings or flags (CLI exit 2)
ShutDownImminent           a BaseException raised inside a job being handed back, so that the job's
                           `except Exception` cannot swallow it while its `finally` blocks still run
"""

from __future__ import annotations

__all__ = ["ShutDownImminent", "WorkerConfigError", "WorkerError"]


class WorkerError(Exception):
    """Base of the worker package's errors."""

    exit_code = 1


class WorkerConfigError(WorkerError):
    exit_code = 2


class ShutDownImminent(BaseException):
    """The instance is going away: this job is being handed back to its queue."""
