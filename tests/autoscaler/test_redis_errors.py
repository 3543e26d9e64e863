"""Every Redis failure of the autoscaler reads the same way: `<what was being done>: <reason>
(<class>: <detail>)`, one line, the reason from core's one table (`fleetkit.core.redis_io`).

Against a port nothing listens on (connection refused) and a real redis-server that refuses a
command (WRONGTYPE), through each module that talks to Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from fleetkit.autoscaler.errors import SourceUnavailable
from fleetkit.autoscaler.holds import HoldStore
from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider, InMemoryQueueDepthSource
from fleetkit.autoscaler.leader import LeaderLock
from fleetkit.autoscaler.model import Hold
from fleetkit.autoscaler.recovery import Recovery
from fleetkit.autoscaler.rq_source import RqQueueDepthSource
from fleetkit.autoscaler.status import fleet_status
from fleetkit.core.redis_io import describe
from fleetkit.core.schema import KEYS
from tests.autoscaler.test_daemon import environment
from tests.redis_server import free_port


@pytest.fixture
def unreachable() -> Iterator[Redis]:
    client = Redis(port=free_port(), retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    yield client
    client.close()


def _lock_holding_a_token(connection: Redis) -> LeaderLock:
    lock = LeaderLock(connection, "test", ttl_s=30, owner="a")
    lock.token = "a:1"  # as if acquired before Redis went away
    return lock


CALLS: list[tuple[str, Callable[[Redis], object], str]] = [
    # (id, the call, what its error line starts with)
    (
        "queues",
        lambda r: RqQueueDepthSource(r, env="test").read({"workers": ["default"]}),
        "cannot read queues from Redis",
    ),
    ("hold-get", lambda r: HoldStore(r, "test").get("workers"), "cannot read the hold of pool"),
    (
        "hold-set",
        lambda r: HoldStore(r, "test").set("workers", 3, 60),
        "cannot write the hold of pool workers to Redis",
    ),
    (
        "hold-restore",
        lambda r: HoldStore(r, "test").restore("workers", Hold(2, None)),
        "cannot restore the hold of pool workers in Redis",
    ),
    (
        "hold-release",
        lambda r: HoldStore(r, "test").release("workers"),
        "cannot end the hold of pool workers in Redis",
    ),
    (
        "lock-acquire",
        lambda r: LeaderLock(r, "test", ttl_s=30).acquire(),
        "cannot take the leader lock in Redis",
    ),
    (
        "lock-fenced",
        lambda r: _lock_holding_a_token(r).fenced({"k": "v"}),
        "cannot write to Redis under the leader lock",
    ),
    (
        "sweep",
        lambda r: Recovery(
            r, InMemoryCapacityProvider({}), heartbeat_ttl_s=10, max_hard_kills=3
        ).sweep(0.0),
        "cannot sweep dead workers in Redis",
    ),
]


@pytest.mark.parametrize(("call", "doing"), [c[1:] for c in CALLS], ids=[c[0] for c in CALLS])
def test_unreachable_redis_is_one_line_worded_by_the_one_table(
    unreachable: Redis, call: Callable[[Redis], object], doing: str
) -> None:
    with pytest.raises(SourceUnavailable) as raised:
        call(unreachable)

    message = str(raised.value)
    cause = raised.value.__cause__
    assert isinstance(cause, RedisError)
    assert message.startswith(doing)
    assert message.endswith(f": {describe(cause)}")
    assert "cannot be reached (ConnectionError: " in message
    assert "\n" not in message


def test_a_refused_command_says_so(redis: Redis) -> None:
    redis.lpush(KEYS.hold("test", "workers"), "a list, not a hold")

    with pytest.raises(SourceUnavailable) as raised:
        HoldStore(redis, "test").get("workers")

    assert str(raised.value).startswith(
        "cannot read the hold of pool workers from Redis: refused the command (ResponseError: "
        "WRONGTYPE"
    )


def test_status_names_the_unreadable_records_in_the_same_words(unreachable: Redis) -> None:
    env = environment()
    fleet = InMemoryCapacityProvider({"workers": (20, 8)})

    digest = fleet_status(
        env, connection=unreachable, source=InMemoryQueueDepthSource(), groups=fleet.read()
    )

    (error,) = digest["errors"]
    assert error.startswith(
        "cannot read the decision records from Redis: cannot be reached (ConnectionError: "
    )
    assert digest["pools"]["workers"]["last_decision"] is None
    assert digest["pools"]["workers"]["groups"]["spot"]["desired"] == 0
