"""Errors raised by the infra package, under fleetkit's one root (`fleetkit.core.errors`).

FleetkitError
└── InfraError
    ├── TemplateError        a rendered template breaks one of our own rules (exit 2)
    ├── LintError            cfn-lint reported errors or warnings (exit 2)
    └── StackError           CloudFormation refused or failed an operation (exit 1)
        ├── StackBusyError       the stack is in an *_IN_PROGRESS state
        └── StackProtectedError  destroy asked of a termination-protected stack

An invalid environment file is core's `ConfigError` (exit 2), whichever command read it.
"""

from __future__ import annotations

from fleetkit.core.errors import AwsError, FleetkitError

__all__ = [
    "InfraError",
    "LintError",
    "StackBusyError",
    "StackError",
    "StackProtectedError",
    "TemplateError",
]


class InfraError(FleetkitError):
    """Base of every error the infra package raises on purpose."""


class TemplateError(InfraError):
    """A rendered template breaks a rule AWS enforces but cfn-lint and moto do not."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))  # a line each


class LintError(InfraError):
    """cfn-lint found errors or warnings in a rendered template."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))  # a line each


class StackError(InfraError, AwsError):
    """CloudFormation refused or failed an operation."""


class StackBusyError(StackError):
    """The stack is mid-operation; nothing was started."""


class StackProtectedError(StackError):
    """The stack has termination protection on; nothing was deleted."""
