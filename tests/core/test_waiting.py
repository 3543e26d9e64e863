"""Waiting at start-up (bounded, said once) and outages after it (a line each way)."""

from __future__ import annotations

import logging

import pytest

from fleetkit.core.errors import RedisUnavailable
from fleetkit.core.waiting import Outage, start_timeout_s, wait_until_reachable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def failing(times: int, clock: Clock) -> object:
    calls = [0]

    def attempt() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise RedisUnavailable("Redis at redis://127.0.0.1:1/0: cannot be reached")
        return "pong"

    return attempt


def test_a_service_that_answers_at_once_is_not_mentioned() -> None:
    said: list[str] = []
    clock = Clock()
    assert wait_until_reachable("Redis", lambda: 1, say=said.append, clock=clock) == 1
    assert said == []


def test_waiting_is_said_once_then_the_arrival() -> None:
    said: list[str] = []
    clock = Clock()
    result = wait_until_reachable(
        "Redis", failing(30, clock), say=said.append, clock=clock, sleep=clock.sleep,
        timeout_s=120,
    )  # fmt: skip
    assert result == "pong"
    assert said == [
        "waiting for Redis: Redis at redis://127.0.0.1:1/0: cannot be reached "
        "(retrying for up to 120 s)",
        "Redis reached after 30 s",
    ]


def test_never_reached_gives_up_with_the_last_error() -> None:
    said: list[str] = []
    clock = Clock()
    with pytest.raises(RedisUnavailable, match=r"cannot be reached \(gave up after 120 s\)"):
        wait_until_reachable(
            "Redis", failing(10_000, clock), say=said.append, clock=clock, sleep=clock.sleep,
            timeout_s=120,
        )  # fmt: skip
    assert len(said) == 1
    assert clock.now == 120


def test_the_start_timeout_is_120_s_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEETKIT_START_TIMEOUT_S", raising=False)
    assert start_timeout_s() == 120
    monkeypatch.setenv("FLEETKIT_START_TIMEOUT_S", "5")
    assert start_timeout_s() == 5


def test_an_outage_is_one_line_when_it_begins_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage("Redis at redis://x:1/0", logging.getLogger("test.outage"), clock=clock)
    with caplog.at_level(logging.INFO, logger="test.outage"):
        outage.recovered()  # nothing was wrong
        assert outage.failed("ConnectionError") is True
        for _ in range(100):
            clock.sleep(1)
            assert outage.failed("ConnectionError") is False
        outage.recovered()
        outage.recovered()
    assert [r.getMessage() for r in caplog.records] == [
        "Redis at redis://x:1/0 unreachable, retrying until it answers: ConnectionError",
        "Redis at redis://x:1/0 reachable again after 100 s",
    ]
    assert not outage.down
