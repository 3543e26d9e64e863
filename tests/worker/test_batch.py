"""One EVAL must write exactly what the same calls on a pipeline write (real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from redis import Redis

from worker.batch import WriteBatch
from worker.health import WorkerHealth
from worker.metrics import WorkerMetrics


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def bookkeeping(redis: Redis, worker: str, writer: Any) -> None:
    metrics, health = WorkerMetrics(redis, worker), WorkerHealth(redis, worker)
    metrics.job_started(0.0123, writer)
    metrics.job_finished(1.5, writer)
    health.record_job(True, now=1_000.0, pipe=writer)
    metrics.job_failed(0.25, writer)
    health.record_job(False, now=1_001.0, pipe=writer)
    writer.hincrbyfloat("fleetkit:test:durations", f"{worker}:sum", 1e-05)
    writer.hdel("fleetkit:test:inflight", worker)


def state(redis: Redis, worker: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in sorted(redis.scan_iter(f"*{worker}*")):
        kind = redis.type(key)
        name = key.replace(worker, "W")
        if kind == "hash":
            found[name] = redis.hgetall(key)
        elif kind == "zset":
            found[name] = [score for _, score in redis.zrange(key, 0, -1, withscores=True)]
        else:
            found[name] = redis.get(key)
        found[name + ":ttl"] = redis.ttl(key) > 0
    found["durations"] = redis.hget("fleetkit:test:durations", f"{worker}:sum")
    found["inflight"] = redis.hget("fleetkit:test:inflight", worker)
    return found


def test_a_batch_writes_what_a_pipeline_writes_in_one_command(redis: Redis) -> None:
    redis.hset("fleetkit:test:inflight", mapping={"piped": "job-1", "batched": "job-2"})
    with redis.pipeline() as pipe:
        bookkeeping(redis, "piped", pipe)
        pipe.execute()
    batch = WriteBatch()
    bookkeeping(redis, "batched", cast(Any, batch))
    with redis.pipeline() as pipe:
        batch.add_to(pipe)
        assert len(pipe.command_stack) == 1
        pipe.execute()

    piped, batched = state(redis, "piped"), state(redis, "batched")
    assert piped == batched
    assert batched["inflight"] is None
    assert len(batch) >= 15


def test_set_without_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="ex="):
        WriteBatch().set("k", 1)
