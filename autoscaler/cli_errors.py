"""How the `autoscaler` CLI reports errors: always one line, `autoscaler: error: …`, on stderr.

Exit 2 for bad input (click's usage errors and our `UsageError`): nothing was touched. Exit 1
for anything else of ours (Redis or AWS unreadable); an `InfraError` keeps its own code.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from fleetkit.autoscaler.errors import AutoscalerError, UsageError
from fleetkit.infra.errors import InfraError

__all__ = ["OneLineErrors", "errors", "reports_errors"]

errors = Console(stderr=True, highlight=False)
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, exit_code: int) -> NoReturn:
    """One line on stderr, `autoscaler: error: …`, and the exit code."""
    line = escape(" ".join(message.split()))  # a value in [brackets] is not rich markup
    errors.print(f"autoscaler: [red]error:[/] {line}", soft_wrap=True)
    sys.exit(exit_code)


def reports_errors(command: F) -> F:
    """Our errors become one line on stderr: exit 2 for bad input, 1 otherwise."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UsageError as exc:
            _fail(str(exc), 2)
        except InfraError as exc:
            _fail(str(exc), exc.exit_code)
        except AutoscalerError as exc:
            _fail(str(exc), 1)

    return wrapper  # type: ignore[return-value]


def _usage_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    param = getattr(exc, "param", None)
    if isinstance(exc, click.MissingParameter) and param is not None and param.envvar:
        envvar = param.envvar if isinstance(param.envvar, str) else param.envvar[0]
        message = f"{message.rstrip('.')} (or set {envvar})"
    return message


# click ≥ 8.2 raises this for a bare group (its message is the help); 8.1 prints help itself.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(click.Group):
    """click's usage errors (missing argument, bad value, unknown option) as one line, exit 2,
    instead of click's usage block."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        standalone = extra.pop("standalone_mode", True)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if isinstance(exc, _NO_ARGS_IS_HELP):
                exc.show()  # bare `autoscaler`: the help, as click shows it
                sys.exit(exc.exit_code)
            _fail(_usage_message(exc), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        if not standalone:
            return result
        sys.exit(result if isinstance(result, int) else 0)
