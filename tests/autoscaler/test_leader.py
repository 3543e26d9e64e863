"""The leader lock against a real redis-server: one holder, renewal, expiry, fencing."""

from __future__ import annotations

import time

import pytest
from redis import Redis

from fleetkit.autoscaler.errors import NotLeader, SourceUnavailable
from fleetkit.autoscaler.leader import LeaderLock
from fleetkit.core.schema import KEYS
from tests.redis_server import free_port

ENV = "test"
KEY = KEYS.leader(ENV)


def test_of_two_daemons_exactly_one_leads_and_renews(redis: Redis) -> None:
    first = LeaderLock(redis, ENV, ttl_s=5, owner="a")
    second = LeaderLock(redis, ENV, ttl_s=5, owner="b")
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.acquire() is True  # renewing keeps it
    assert redis.pttl(KEY) > 4000
    assert first.epoch == 1


def test_a_lapsed_lock_passes_on_with_a_higher_epoch_and_fences_the_old_leader(
    redis: Redis,
) -> None:
    old = LeaderLock(redis, ENV, ttl_s=0.3, owner="old")
    new = LeaderLock(redis, ENV, ttl_s=5, owner="new")
    assert old.acquire()
    time.sleep(0.5)  # the old leader stalled past its TTL
    assert new.acquire()
    assert (new.epoch or 0) > (old.epoch or 0)

    with pytest.raises(NotLeader):
        old.fenced({"fleetkit:test:record": "stale"})
    assert redis.get("fleetkit:test:record") is None
    with pytest.raises(NotLeader):
        old.check()

    new.fenced({"fleetkit:test:record": "fresh"})
    assert redis.get("fleetkit:test:record") == b"fresh"


def test_release_lets_the_next_daemon_lead_at_once(redis: Redis) -> None:
    first = LeaderLock(redis, ENV, ttl_s=30, owner="a")
    second = LeaderLock(redis, ENV, ttl_s=30, owner="b")
    assert first.acquire()
    first.release()
    assert second.acquire()
    first.release()  # not ours any more: must not delete the new holder's lock
    assert redis.get(KEY) is not None


def test_unreachable_redis_means_not_leading() -> None:
    lock = LeaderLock(Redis(port=free_port(), socket_connect_timeout=0.5), ENV, ttl_s=5)
    with pytest.raises(SourceUnavailable):
        lock.acquire()
    assert lock.token is None
