"""Redis at the boundary: an outage is waited for, a refusal is not; a location shows no secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import exceptions

from fleetkit.core.errors import RedisUnavailable
from fleetkit.core.redis_io import describe, fail_fast_client, unreachable, wait_for_redis, where
from fleetkit.core.waiting import START_TIMEOUT_VARIABLE
from tests.redis_server import RedisServer, free_port

ERRORS = [
    ("refused", exceptions.ConnectionError("Error 111 connecting"), True),
    ("timed-out", exceptions.TimeoutError("Timeout reading from socket"), True),
    ("loading", exceptions.BusyLoadingError("Redis is loading the dataset"), True),
    ("wrong-password", exceptions.AuthenticationError("invalid password"), False),
    ("read-only-replica", exceptions.ReadOnlyError("You can't write against a replica"), False),
    ("refused-command", exceptions.ResponseError("NOPERM this user has no permissions"), False),
    ("out-of-memory", exceptions.OutOfMemoryError("command not allowed when used memory"), False),
]


@pytest.mark.parametrize(("error", "outage"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_an_outage_is_told_from_a_refusal(error: exceptions.RedisError, outage: bool) -> None:
    assert unreachable(error) is outage
    assert "\n" not in describe(error)


def test_nothing_is_no_outage() -> None:
    assert unreachable(None) is False


def test_a_location_shows_no_credentials() -> None:
    assert where("redis://:secret@10.0.0.5:6380/2") == "10.0.0.5:6380/2"
    assert where("rediss://user:secret@cache.internal") == "cache.internal:6379/0"


def test_a_redis_that_is_away_is_waited_for_then_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(START_TIMEOUT_VARIABLE, "1")
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    said: list[str] = []
    with pytest.raises(RedisUnavailable, match=r"cannot be reached .* \(gave up after 1 s\)$"):
        wait_for_redis(fail_fast_client(url), url, say=said.append)
    assert len(said) == 1
    assert said[0].startswith(f"waiting for Redis: cannot reach Redis at {where(url)}: ")
    assert "secret" not in said[0]


def test_a_wrong_password_is_an_error_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long start timeout: the error must come without it (no wait mends a wrong password).
    monkeypatch.setenv(START_TIMEOUT_VARIABLE, "600")
    server = RedisServer(tmp_path, password="right").start()
    try:
        wrong = f"redis://:wrong@127.0.0.1:{server.port}/0"
        said: list[str] = []
        with pytest.raises(RedisUnavailable, match="authentication failed") as raised:
            wait_for_redis(fail_fast_client(wrong), wrong, say=said.append)
        assert said == []  # never "waiting for Redis"
        assert "gave up" not in str(raised.value)
        wait_for_redis(fail_fast_client(server.url), server.url, say=said.append)
        assert said == []
    finally:
        server.stop()
