"""The beacon: a worker's heartbeat thread, against a real redis-server."""

from __future__ import annotations

from redis import Redis

from fleetkit.core.schema import KEYS
from fleetkit.worker.beacon import Beacon

TTL = 1.0


def test_the_beacon_beats_before_start_returns(redis: Redis, redis_url: str) -> None:
    beacon = Beacon(
        redis_url,
        "w1",
        ttl_s=TTL,
        interval_s=60,  # the thread would not beat again during this test
        sweep_interval_s=60,
        max_hard_kills=3,
        instance="i-0abc",
    )
    beacon.start()
    try:
        assert redis.zscore(KEYS.heartbeats, "w1") is not None
        assert redis.hget(KEYS.instances, "w1") == b"i-0abc"
    finally:
        beacon.stop()
        beacon.join(timeout=5)
        beacon.connection.close()
