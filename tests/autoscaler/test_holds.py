"""Holds (real Redis) and the duration syntax of `--hold`."""

from __future__ import annotations

import pytest
from redis import Redis

from fleetkit.autoscaler.holds import HoldStore, parse_duration
from fleetkit.core.errors import UsageError
from fleetkit.core.schema import KEYS

DURATIONS = [
    ("zero", "0", 0.0),
    ("seconds-bare", "90", 90.0),
    ("seconds", "90s", 90.0),
    ("minutes", "30m", 1800.0),
    ("hours", "2h", 7200.0),
    ("mixed", "1h30m", 5400.0),
    ("days", "1d", 86400.0),
    ("the-cap", "7d", 7 * 86400.0),
]


@pytest.mark.parametrize(
    ("text", "seconds"), [c[1:] for c in DURATIONS], ids=[c[0] for c in DURATIONS]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5m", "30 minutes", "m", "1h30", "5x"])
def test_bad_durations_name_the_value(text: str) -> None:
    with pytest.raises(UsageError, match="--hold"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["8d", "7d1s", "169h", "604801"])
def test_a_hold_longer_than_a_week_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match=f"--hold '{text}': at most 7d"):
        parse_duration(text)


def test_a_hold_expires_with_its_duration_and_release_ends_it(redis: Redis) -> None:
    store = HoldStore(redis, "staging", clock=lambda: 1000.0)
    hold = store.set("workers", 500, 1800)
    assert hold is not None and (hold.count, hold.until) == (500, 2800.0)
    assert store.get("workers") == hold
    assert 1_799_000 < redis.pttl(KEYS.hold("staging", "workers")) <= 1_800_000

    assert store.release("workers") is True
    assert store.get("workers") is None
    assert store.release("workers") is False


def test_hold_zero_records_no_hold(redis: Redis) -> None:
    store = HoldStore(redis, "staging")
    store.set("workers", 5, 600)
    assert store.set("workers", 5, 0) is None
    assert store.get("workers") is None
