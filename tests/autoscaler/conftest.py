"""Fixtures shared by the autoscaler's tests (the servers themselves are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.connection import AbstractConnection


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many times anything was written to a Redis socket: one per round trip."""
    sent = [0]
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return lambda: sent[0]


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and AWS's own endpoints: for in-process moto and botocore's Stubber."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    # In-process moto only intercepts AWS's own endpoints, not the moto server's.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
