"""What the three CLIs share: errors as one line on stderr, and quiet logging.

Every failure, ours or click's, ends the same way: `<program>: error: <message>` on stderr (a
line per problem when there are several), printed literally (a value in [brackets] is no
markup), and the exit code on the error's class: 2 for bad input, 3 for "not deployed", 1 for
anything else. Never a traceback for an expected failure: Redis and AWS errors that reach here
unmapped are translated with the same tables as everywhere else.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from redis.exceptions import RedisError
from rich.console import Console
from rich.text import Text

from fleetkit.core.aws import AWS_EXCEPTIONS, aws_error
from fleetkit.core.errors import FleetkitError, RedisUnavailable
from fleetkit.core.redis_io import redis_error

__all__ = ["OneLineErrors", "configure_logging", "stderr"]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

# click ≥ 8.2 raises this for a bare group (its message is the help); 8.1 prints help itself.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
# Libraries that log every request at INFO: one line per IMDS poll or AWS call drowns the log.
_CHATTY = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer")


class OneLineErrors(click.Group):
    """A click group whose every failure is one line: `<name>: error: <message>`, and its exit
    code. `name` is the program's name (`infra`, `autoscaler`, `fleet-worker`)."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        standalone = extra.pop("standalone_mode", True)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if isinstance(exc, _NO_ARGS_IS_HELP):
                exc.show()  # a bare command: the help, as click shows it
                sys.exit(exc.exit_code)
            self.fail(_usage_message(exc), exc.exit_code)
        except click.Abort:
            self.fail("aborted", 1)
        except FleetkitError as exc:
            self.report(exc)
            self.fail(str(exc), exc.exit_code)
        except RedisError as exc:
            self.fail(str(redis_error(exc, "Redis")), RedisUnavailable.exit_code)
        except AWS_EXCEPTIONS as exc:
            mapped = aws_error(exc, "AWS")
            self.fail(str(mapped), mapped.exit_code)
        if not standalone:
            return result
        sys.exit(result if isinstance(result, int) else 0)

    def report(self, exc: FleetkitError) -> None:
        """Show what an error carries beyond its message (infra: the failed stack events)."""

    def fail(self, message: str, exit_code: int) -> NoReturn:
        """Each line of `message` as `<program>: error: <line>` on stderr, then exit."""
        for line in message.splitlines() or [""]:
            stderr.print(
                Text.assemble(f"{self.name}: ", ("error:", "red"), " ", " ".join(line.split()))
            )
        sys.exit(exit_code)


def _usage_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    param = getattr(exc, "param", None)
    if isinstance(exc, click.MissingParameter) and param is not None and param.envvar:
        envvar = param.envvar if isinstance(param.envvar, str) else param.envvar[0]
        message = f"{message.rstrip('.')} (or set {envvar})"
    return message


def configure_logging(level: int | str = logging.INFO) -> None:
    """Timestamped lines on stderr at `level`; request-per-line libraries only when they warn."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
