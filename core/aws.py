"""The boto3 boundary shared by every part: clients for one environment's region, and
botocore's exceptions translated into one-line errors saying what was being done.

boto3 itself honours AWS_PROFILE, AWS_ENDPOINT_URL (moto, LocalStack, the local sandbox) and
the usual credential chain; nothing here overrides them.

botocore retries an endpoint it cannot reach for about 25 s without a word (minutes, for one
that drops packets). `AwsReachability` watches the retries of every client `AwsClients` makes,
leaving botocore's decisions alone: "waiting for AWS at <endpoint>: <error>" once when they
begin (a spinner on a terminal), a line when AWS answers again, and, when nothing was ever
reached, an end before `start_timeout_s()` (`fleetkit.core.waiting`'s rule for start-up).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError
from rich.text import Text

from fleetkit.core.errors import AwsError, ConfigError, FleetkitError
from fleetkit.core.waiting import START_TIMEOUT_VARIABLE, start_timeout_s

if TYPE_CHECKING:
    import boto3
    from rich.console import Console
    from rich.status import Status

    from fleetkit.core.environment import Environment

__all__ = [
    "AWS_EXCEPTIONS",
    "CONNECT_TIMEOUT_S",
    "READ_TIMEOUT_S",
    "RETRY_CONFIG",
    "AwsClients",
    "AwsReachability",
    "AwsUnreachableError",
    "aws_error",
    "aws_errors",
    "error_code",
    "resolve_redis_url",
]

# An AWS endpoint accepts a connection in well under a second; botocore's default (60 s) lets a
# black-holed one stall each of the 10 attempts for a minute.
CONNECT_TIMEOUT_S = 5.0
# botocore's default, stated: the start-up bound below counts on it.
READ_TIMEOUT_S = 60.0
RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 10},
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    user_agent_extra="fleetkit",
)
# botocore's backoff before attempt n+1 (standard and adaptive modes): at most 2^(n-1) s, 20 s cap.
_MAX_BACKOFF_S = 20.0
# Failures that mean no answer came at all (refused, unresolvable, timed out, cut off).
_UNANSWERED = (BotoConnectionError, HTTPClientError)


# What a boto3 call raises when AWS refuses, cannot be reached, or answers something botocore
# cannot parse (a proxy's HTML page, an emulator's 500): the last is no BotoCoreError.
AWS_EXCEPTIONS = (BotoCoreError, ClientError, ResponseParserError)
AwsException = BotoCoreError | ClientError | ResponseParserError


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def aws_error(
    exc: AwsException, doing: str, *, error: type[FleetkitError] = AwsError
) -> FleetkitError:
    """botocore's exception as one of ours, one line: `<doing>: <code>: <message>`.

    An AWS refusal (ClientError) becomes `error`, so a package can raise its own subclass
    (infra's CloudFormation adapter raises `StackError`); anything else is an `AwsError`.
    """
    if isinstance(exc, ClientError):
        detail = exc.response.get("Error", {})
        return error(f"{doing}: {detail.get('Code')}: {detail.get('Message')}")
    if isinstance(exc, NoCredentialsError):
        return AwsError(
            f"{doing}: no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, ProfileNotFound | NoRegionError):
        return AwsError(f"{doing}: {exc}")
    if isinstance(exc, ResponseParserError):
        # Its message goes on with the whole response body; the first line says what failed
        # (and ends in "Further retries may succeed:", which is no advice to a user).
        first = (str(exc).strip().splitlines() or ["empty response"])[0]
        first = re.sub(r"\s*Further retries may succeed:?$", "", first)
        return AwsError(f"{doing}: unreadable answer from AWS: {first}")
    return AwsError(f"{doing}: {exc}")


@contextmanager
def aws_errors(doing: str, *, error: type[FleetkitError] = AwsError) -> Iterator[None]:
    """Raise botocore's exceptions as ours (`aws_error`)."""
    try:
        yield
    except AWS_EXCEPTIONS as exc:
        raise aws_error(exc, doing, error=error) from exc


class AwsUnreachableError(BotoCoreError):
    """AWS was never reached at start-up, and another attempt would end past the start timeout."""

    fmt = (
        "AWS at {endpoint} not reached (retried for {waited:.0f} s; another attempt could "
        "outlast the {limit:.0f} s start-up timeout, {variable}): {error}"
    )


class AwsReachability:
    """botocore's retries of unanswered requests, said aloud, and bounded at start-up.

    An observer of botocore's events (`watch(client)`): it never changes a retry decision, it
    only reports them, and ends the wait (AwsUnreachableError, from inside the retry loop) when
    nothing was ever reached and the next backoff and attempt could end past `timeout_s`
    (default `start_timeout_s()`), so the program is done by then. An attempt may take
    CONNECT_TIMEOUT_S + READ_TIMEOUT_S (65 s): a timeout shorter than that gives up at the
    first failure.
    """

    def __init__(
        self,
        *,
        say: Callable[[str], None] | None = None,
        console: Console | None = None,
        timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say = say or _say_on_stderr
        self._console = console
        self._timeout_s = timeout_s
        self._clock = clock
        self.reached = False  # an answer ever came, from any request of any watched client
        self._first_try: float | None = None
        self._down_since: float | None = None
        self._spinner: Status | None = None

    def watch(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-send", self.before_send)
        events.register("needs-retry", self.needs_retry)
        events.register("after-call", self.answered)
        events.register("after-call-error", self.call_failed)

    def before_send(self, **_: Any) -> None:
        if self._first_try is None:
            self._first_try = self._clock()

    def needs_retry(
        self,
        attempts: int = 1,
        caught_exception: Exception | None = None,
        endpoint: Any = None,
        **_: Any,
    ) -> None:
        """botocore asks whether to retry; we say what happens and leave the answer to it."""
        if not isinstance(caught_exception, _UNANSWERED):
            return  # AWS answered (a throttle or a 500 is an answer): botocore's business
        now = self._clock()
        where = str(getattr(endpoint, "host", None) or "its endpoint")
        if self._down_since is None:
            self._down_since = now
            self._waiting(where, caught_exception)
        elif self._spinner is not None:
            self._spinner.update(Text(self._line(where, caught_exception, now)))
        if self.reached:
            return  # after a start, an outage lasts as long as botocore's retries do
        began = self._down_since if self._first_try is None else self._first_try
        waited = now - began
        backoff = min(2.0 ** max(attempts - 1, 0), _MAX_BACKOFF_S)
        limit = self._limit()
        if waited + backoff + CONNECT_TIMEOUT_S + READ_TIMEOUT_S > limit:
            raise AwsUnreachableError(
                endpoint=where,
                waited=waited,
                limit=limit,
                variable=START_TIMEOUT_VARIABLE,
                error=" ".join(str(caught_exception).split()),
            )

    def answered(self, **_: Any) -> None:
        self.reached = True
        self._stop_spinner()
        if self._down_since is not None:
            lasted = self._clock() - self._down_since
            self._down_since = None
            self._say(f"AWS reached after {lasted:.0f} s")

    def call_failed(self, **_: Any) -> None:
        self._stop_spinner()  # the error line comes next; the outage goes on

    def _limit(self) -> float:
        return start_timeout_s() if self._timeout_s is None else self._timeout_s

    def _line(self, where: str, error: Exception, now: float | None = None) -> str:
        line = f"waiting for AWS at {where}: {' '.join(str(error).split())}"
        if now is not None and self._down_since is not None:
            return f"{line} ({now - self._down_since:.0f} s)"
        return line

    def _waiting(self, where: str, error: Exception) -> None:
        console = self._console if self._console is not None else _stderr_console()
        if console.is_terminal:
            self._spinner = console.status(Text(self._line(where, error)))  # literal, no markup
            self._spinner.start()
        elif self.reached:
            self._say(f"{self._line(where, error)} (retrying)")
        else:
            self._say(f"{self._line(where, error)} (retrying for up to {self._limit():.0f} s)")

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None


def _stderr_console() -> Console:
    # Imported here: the CLI module imports this one.
    from fleetkit.core.cli import stderr

    return stderr


def _say_on_stderr(line: str) -> None:
    _stderr_console().print(Text(line), soft_wrap=True)


class AwsClients:
    """Lazily created clients for one environment's region, sharing one session; botocore's
    retries of each are watched by one `AwsReachability`."""

    def __init__(
        self,
        region: str,
        session: boto3.Session | None = None,
        *,
        reachability: AwsReachability | None = None,
    ) -> None:
        self.region = region
        self._session = session
        self._clients: dict[str, Any] = {}
        self.reachability = reachability or AwsReachability()

    @classmethod
    def for_environment(
        cls, env: Environment, *, say: Callable[[str], None] | None = None
    ) -> AwsClients:
        """`say`: where a service's waiting lines go (its log); a command's go to stderr."""
        return cls(env.region, reachability=AwsReachability(say=say))

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            import boto3  # here: reading an environment needs no boto3

            with aws_errors("opening an AWS session"):
                self._session = boto3.Session(region_name=self.region)
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            with aws_errors(f"creating the {service} client"):
                # service is a runtime string: the stubs only type literal names.
                client = self.session.client(  # type: ignore[call-overload]
                    service, config=RETRY_CONFIG
                )
            self.reachability.watch(client)
            self._clients[service] = client
        return self._clients[service]

    def use(self, service: str, client: Any) -> None:
        """Put a ready client in place (tests hand in stubbed clients this way)."""
        self._clients[service] = client


def resolve_redis_url(env: Environment, clients: AwsClients) -> str:
    """FLEETKIT_REDIS_URL, else the file's url, else the SSM SecureString it names."""
    url = env.redis_url()
    if url:
        return url
    name = env.redis.ssm_parameter
    if not name:
        raise ConfigError(
            f"{env.source or env.name}: redis: no url or ssm_parameter, and FLEETKIT_REDIS_URL "
            "is not set"
        )
    with aws_errors(f"reading SSM parameter {name}"):
        value: str = clients.client("ssm").get_parameter(Name=name, WithDecryption=True)[
            "Parameter"
        ]["Value"]
    return value
