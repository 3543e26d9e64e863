"""A running daemon through an outage: it keeps ticking and keeping capacity, and says so in one
line when the outage begins and one when it ends, not in a warning per tick. Redis is a real
redis-server that is stopped and started again on its port; AWS is the in-memory provider.
Start-up (Redis never reached): test_startup.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleetkit.autoscaler.daemon import AWS, REDIS
from fleetkit.autoscaler.in_memory import InMemoryQueueDepthSource
from fleetkit.autoscaler.model import Action
from tests.autoscaler.test_daemon import daemon, provider, reading
from tests.redis_server import RedisServer

DAEMON_LOG = "fleetkit.autoscaler.daemon"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server this test may stop and start."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The daemon's own lines (not the per-tick decision lines), and empties the capture."""
    lines = [r.getMessage() for r in caplog.records if r.name == DAEMON_LOG]
    caplog.clear()
    return lines


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "autoscaler.decision"]


def test_a_redis_outage_is_one_line_when_it_begins_and_one_when_it_ends(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    connection = Redis.from_url(server.url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    fleet = provider()
    fleet.set_desired(fleet.read()["workers"].spot, 3)
    scaler = daemon(connection, InMemoryQueueDepthSource(reading(queued=30)), fleet)
    assert scaler.tick().leader
    said(caplog)

    server.stop()
    reports = [scaler.tick() for _ in range(4)]

    assert [r.unreadable for r in reports] == [{REDIS}] * 4
    assert all(r.errors and not r.leader for r in reports)
    (began,) = said(caplog)
    assert began.startswith(
        "Redis unreachable, retrying until it answers: cannot take the leader lock in Redis: "
        "cannot be reached (ConnectionError: "
    )
    assert began.endswith("(keeping capacity)")
    assert fleet.read()["workers"].spot.desired == 3  # capacity kept

    server.start()
    back = scaler.tick()

    assert back.leader and not back.errors
    (ended,) = said(caplog)
    assert ended.startswith("Redis reachable again after ")
    assert scaler.tick().leader
    assert said(caplog) == []  # nothing more once it is over


def test_an_aws_outage_is_one_line_each_way_and_a_keep_decision_per_tick(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fleet = provider()
    scaler = daemon(redis, InMemoryQueueDepthSource(reading(queued=30)), fleet)
    scaler.tick()
    said(caplog)
    caplog.clear()

    fleet.fail_reads = True
    reports = [scaler.tick() for _ in range(3)]

    assert [r.unreadable for r in reports] == [{AWS}] * 3
    assert [d["action"] for d in decisions(caplog)] == [Action.KEEP.value] * 3
    (began,) = said(caplog)
    assert began == (
        "AWS unreachable, retrying until it answers: "
        "describe_auto_scaling_groups: simulated outage (keeping capacity)"
    )

    fleet.fail_reads = False
    assert not scaler.tick().errors
    (ended,) = said(caplog)
    assert ended.startswith("AWS reachable again after ")


def test_a_standby_does_not_end_an_aws_outage_it_never_looked_at(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Only the leader reads the groups: a standby tick proves nothing about AWS.
    caplog.set_level(logging.INFO)
    fleet = provider()
    scaler = daemon(redis, InMemoryQueueDepthSource(reading()), fleet)
    fleet.fail_reads = True
    scaler.tick()
    assert scaler.outages[AWS].down
    assert scaler.lock is not None
    redis.set(scaler.lock.key, "another:99")  # another daemon leads now
    scaler.lock.token = None

    assert not scaler.tick().leader

    assert scaler.outages[AWS].down
    assert not scaler.outages[REDIS].down
