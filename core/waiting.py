"""Waiting for what fleetkit depends on (Redis, AWS), and saying so once.

Two situations, two rules:

- **At start-up, nothing was ever reached**: `wait_until_reachable` retries, says "waiting for …"
  once (a spinner on a terminal), and gives up after `start_timeout_s()` (120 s unless
  `FLEETKIT_START_TIMEOUT_S` says otherwise) with the last error, so a wrong address ends in
  one error line instead of silence or an endless loop.
- **After a successful start**, a service that goes away is waited for as long as it takes
  (instances must survive a Redis failover): `Outage` logs one line when it begins and one when
  it ends, however many retries lie between.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from fleetkit.core.errors import FleetkitError

if TYPE_CHECKING:  # a worker process (which forks per job) reports outages without loading rich
    from rich.console import Console

__all__ = ["START_TIMEOUT_VARIABLE", "Outage", "start_timeout_s", "wait_until_reachable"]

T = TypeVar("T")
START_TIMEOUT_VARIABLE = "FLEETKIT_START_TIMEOUT_S"
_START_TIMEOUT_S = 120.0


def start_timeout_s() -> float:
    """How long a program waits at start-up for a service it has never reached."""
    raw = os.environ.get(START_TIMEOUT_VARIABLE)
    try:
        return max(0.0, float(raw)) if raw else _START_TIMEOUT_S
    except ValueError:
        return _START_TIMEOUT_S


class Outage:
    """One dependency's reachability: a line when an outage begins, one when it ends.

    `level`: of both lines (a process whose supervisor reports the same outage says it at INFO).
    """

    def __init__(
        self,
        what: str,
        log: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self.what = what
        self.log = log
        self.level = level
        self._clock = clock
        self._since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, detail: object) -> bool:
        """Record a failed attempt; True (and one warning) only for the first of an outage."""
        if self._since is not None:
            return False
        self._since = self._clock()
        self.log.log(self.level, "%s unreachable, retrying until it answers: %s", self.what, detail)
        return True

    def recovered(self) -> None:
        """Record a successful attempt; one line if it ends an outage."""
        if self._since is None:
            return
        lasted = self._clock() - self._since
        self._since = None
        self.log.log(self.level, "%s reachable again after %.0f s", self.what, lasted)


def wait_until_reachable(
    what: str,
    attempt: Callable[[], T],
    *,
    say: Callable[[str], None],
    console: Console | None = None,
    timeout_s: float | None = None,
    interval_s: float = 1.0,
    retryable: Callable[[FleetkitError], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`attempt()` until it returns, retrying while it raises a FleetkitError that
    `retryable` accepts (by default any: an error it refuses is raised at once, such as a
    wrong password, which no wait mends).

    While it fails: one line through `say` ("waiting for <what>: <error>"), or a spinner on
    `console` when that is a terminal. After `timeout_s` (default `start_timeout_s()`) without
    a success, the last error is raised again, saying how long it was tried.
    """
    limit = start_timeout_s() if timeout_s is None else timeout_s
    spinner = console.status("") if console is not None and console.is_terminal else None
    began = clock()
    waited_at_all = False
    try:
        while True:
            try:
                result = attempt()
            except FleetkitError as exc:
                if retryable is not None and not retryable(exc):
                    raise
                waited = clock() - began
                if waited >= limit:
                    raise type(exc)(f"{exc} (gave up after {waited:.0f} s)") from exc
                line = f"waiting for {what}: {exc}"
                if spinner is not None and console is not None:
                    # As text, not markup: a value in [brackets] is shown as it is.
                    shown = f"{line} ({waited:.0f} s of {limit:.0f})"
                    spinner.update(console.render_str(shown, markup=False))
                    if not waited_at_all:
                        spinner.start()
                elif not waited_at_all:
                    say(f"{line} (retrying for up to {limit:.0f} s)")
                waited_at_all = True
                sleep(min(interval_s, max(0.0, limit - waited)))
                continue
            if waited_at_all:
                say(f"{what} reached after {clock() - began:.0f} s")
            return result
    finally:
        if spinner is not None and waited_at_all:
            spinner.stop()
