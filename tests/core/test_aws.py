"""botocore's failures as one line saying what was being done, and its retries of an
unreachable endpoint said aloud and bounded at start-up."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.parsers import ResponseParserError
from rich.console import Console

from fleetkit.core.aws import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    AwsClients,
    AwsReachability,
    AwsUnreachableError,
    aws_errors,
)
from fleetkit.core.errors import AwsError
from tests.redis_server import free_port

HTML_500 = (
    "Unable to parse response (syntax error: line 1, column 0), invalid XML received. Further "
    "retries may succeed:\nb'<!doctype html>\\n<html lang=en>\\n<title>500 Internal Server "
    "Error</title>\\n'"
)


def test_an_unparsable_answer_is_one_line_without_the_body() -> None:
    with pytest.raises(AwsError) as caught, aws_errors("setting termination protection on s"):
        raise ResponseParserError(HTML_500)

    assert str(caught.value) == (
        "setting termination protection on s: unreadable answer from AWS: Unable to parse "
        "response (syntax error: line 1, column 0), invalid XML received."
    )


# --- AwsReachability: botocore's retries said aloud, bounded at start-up ----------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    host = "https://cloudformation.eu-west-1.amazonaws.com"


REFUSED = EndpointConnectionError(endpoint_url="https://cloudformation.eu-west-1.amazonaws.com/")
WAITING = (
    "waiting for AWS at https://cloudformation.eu-west-1.amazonaws.com: Could not connect to the "
    'endpoint URL: "https://cloudformation.eu-west-1.amazonaws.com/"'
)


def watch(timeout_s: float = 120.0) -> tuple[AwsReachability, list[str], Clock]:
    said: list[str] = []
    clock = Clock()
    quiet = Console(file=io.StringIO(), force_terminal=False)
    return (
        AwsReachability(say=said.append, console=quiet, timeout_s=timeout_s, clock=clock),
        said,
        clock,
    )


def fail(reach: AwsReachability, attempts: int, error: Exception = REFUSED) -> None:
    reach.needs_retry(attempts=attempts, caught_exception=error, endpoint=Endpoint(), response=None)


def test_retries_are_said_once_then_the_answer() -> None:
    reach, said, clock = watch()
    reach.before_send()
    for attempt in range(1, 6):
        clock.now = attempt * 0.5
        fail(reach, attempt)
    reach.call_failed()  # botocore gave up on that call; the next one is answered
    clock.now = 9.0
    reach.answered()

    assert said == [f"{WAITING} (retrying for up to 120 s)", "AWS reached after 8 s"]
    assert reach.reached


def test_an_answer_botocore_retries_is_no_outage() -> None:
    reach, said, _ = watch()
    # A throttle or a 500: AWS answered, botocore decides, nothing is said.
    reach.needs_retry(attempts=1, caught_exception=None, response=({}, {}), endpoint=Endpoint())
    reach.answered()
    assert said == []


@pytest.mark.parametrize(
    ("timeout_s", "last_attempt"),
    # An attempt may take 65 s (connect + read) after a backoff of up to 2^(n-1) s, capped at 20.
    [(120.0, 4), (66.0, 1), (30.0, 0)],
)
def test_never_reached_ends_before_the_start_timeout(timeout_s: float, last_attempt: int) -> None:
    reach, said, clock = watch(timeout_s)
    reach.before_send()
    attempt = 0
    with pytest.raises(AwsUnreachableError) as caught:
        for attempt in range(1, 11):
            clock.now = 10.0 * (attempt - 1)  # black-holed: each attempt times out
            fail(reach, attempt)
    assert attempt == last_attempt + 1
    assert str(caught.value) == (
        f"AWS at {Endpoint.host} not reached (retried for {10.0 * last_attempt:.0f} s; another "
        f"attempt could outlast the {timeout_s:.0f} s start-up timeout, FLEETKIT_START_TIMEOUT_S): "
        f'Could not connect to the endpoint URL: "{Endpoint.host}/"'
    )
    assert said == [f"{WAITING} (retrying for up to {timeout_s:.0f} s)"]


def test_after_a_start_an_outage_is_waited_out() -> None:
    reach, said, clock = watch(timeout_s=30)
    reach.before_send()
    reach.answered()
    for attempt in range(1, 11):
        clock.now = 1000.0 + 60 * attempt
        fail(reach, attempt)  # no AwsUnreachableError: botocore's retries decide
    clock.now = 2000.0
    reach.answered()
    assert said == [f"{WAITING} (retrying)", "AWS reached after 940 s"]


def test_on_a_terminal_the_wait_is_a_spinner() -> None:
    said: list[str] = []
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    reach = AwsReachability(say=said.append, console=terminal, timeout_s=120, clock=Clock())
    fail(reach, 1)
    fail(reach, 2)
    reach.call_failed()
    assert said == []  # the spinner said it, and is gone again
    assert "waiting for AWS at https://cloudformation.eu-west-1.amazonaws.com" in (
        terminal.file.getvalue()  # type: ignore[attr-defined]
    )


def test_clients_have_a_connect_timeout_and_are_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port nobody listens on, and a start timeout shorter than one attempt: the first
    # refusal is said, and ends the call.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    said: list[str] = []
    quiet = Console(file=io.StringIO(), force_terminal=False)
    clients = AwsClients(
        "us-east-1", reachability=AwsReachability(say=said.append, console=quiet, timeout_s=1)
    )
    client = clients.client("cloudformation")
    assert client.meta.config.connect_timeout == CONNECT_TIMEOUT_S == 5
    assert client.meta.config.read_timeout == READ_TIMEOUT_S

    unreachable = r"^describing stacks: AWS at http://127\.0\.0\.1:\d+ not reached"
    with pytest.raises(AwsError, match=unreachable), aws_errors("describing stacks"):
        client.describe_stacks()
    assert len(said) == 1 and said[0].startswith("waiting for AWS at http://127.0.0.1:")
