"""Errors raised by the infra package.

InfraError
├── ConfigError          an environment file is missing or invalid (CLI exit 2)
├── TemplateError        a rendered template breaks one of our own rules
├── LintError            cfn-lint reported errors or warnings
└── StackError           CloudFormation refused or failed an operation
    ├── StackBusyError       the stack is in an *_IN_PROGRESS state
    └── StackProtectedError  destroy asked of a termination-protected stack
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InfraError",
    "LintError",
    "StackBusyError",
    "StackError",
    "StackProtectedError",
    "TemplateError",
]


class InfraError(Exception):
    """Base of every error the infra package raises on purpose."""

    exit_code = 1


class ConfigError(InfraError):
    """An environment file is missing or invalid."""

    exit_code = 2


class TemplateError(InfraError):
    """A rendered template breaks a rule AWS enforces but cfn-lint and moto do not."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class LintError(InfraError):
    """cfn-lint found errors or warnings in a rendered template."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StackError(InfraError):
    """CloudFormation refused or failed an operation."""


class StackBusyError(StackError):
    """The stack is mid-operation; nothing was started."""


class StackProtectedError(StackError):
    """The stack has termination protection on; nothing was deleted."""
