"""Errors of the worker package, under fleetkit's one root (`fleetkit.core.errors`).

FleetkitError
└── WorkerError            base of every error the worker raises on purpose
    └── WorkerConfigError  bad settings or flags (CLI exit 2)

ShutDownImminent           a BaseException raised inside a job being handed back, so that the job's
                           `except Exception` cannot swallow it while its `finally` blocks still run

Job authors import it as `from fleetkit.worker.errors import ShutDownImminent`.
"""

from __future__ import annotations

from fleetkit.core.errors import FleetkitError

__all__ = ["ShutDownImminent", "WorkerConfigError", "WorkerError"]


class WorkerError(FleetkitError):
    """Base of the worker package's errors."""


class WorkerConfigError(WorkerError):
    exit_code = 2


class ShutDownImminent(BaseException):
    """The instance is going away: this job is being handed back to its queue."""
