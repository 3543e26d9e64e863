"""One EVAL must write exactly what the same calls on a pipeline write (real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from redis import Redis
from rq.job import JobStatus
from rq.worker import WorkerStatus

from fleetkit.worker.batch import WriteBatch
from fleetkit.worker.health import WorkerHealth
from fleetkit.worker.metrics import WorkerMetrics


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


def start_writes(writer: Any, prefix: str) -> None:
    """The calls rq makes on a pipeline when a job starts (rq 2.12), with rq's own value types."""
    writer.hset(f"{prefix}:execution", mapping={"id": "e1", "created_at": 1.25, "n": 7})
    writer.hset(f"{prefix}:worker", "state", WorkerStatus.BUSY)
    writer.hset(f"{prefix}:job", mapping={"status": JobStatus.STARTED, "worker_name": "w"})
    writer.hset(f"{prefix}:worker", "current_job_working_time", 0)
    writer.zadd(f"{prefix}:wip", {"job:e1": 100, "job:e2": "+inf"})
    writer.zadd(f"{prefix}:wip", {"job:e1": 200, "job:absent": 300}, xx=True)
    writer.expire(f"{prefix}:execution", 240)
    writer.lrem(f"{prefix}:intermediate", 1, "job")


def test_rq_start_writes_in_a_batch_match_a_pipeline(redis: Redis) -> None:
    for prefix in ("piped", "batched"):
        redis.rpush(f"{prefix}:intermediate", "other", "job", "job")
    with redis.pipeline() as pipe:
        start_writes(pipe, "piped")
        pipe.execute()
    batch = WriteBatch()
    start_writes(cast(Any, batch), "batched")
    batch.add_to(redis)

    for name in ("execution", "worker", "job"):
        assert redis.hgetall(f"batched:{name}") == redis.hgetall(f"piped:{name}")
    assert redis.hget("batched:worker", "state") == "busy"  # the enum's value, not its repr
    wip = redis.zrange("batched:wip", 0, -1, withscores=True)
    assert wip == redis.zrange("piped:wip", 0, -1, withscores=True)
    assert wip == [("job:e1", 200.0), ("job:e2", float("inf"))]  # XX: no new member
    assert redis.lrange("batched:intermediate", 0, -1) == ["other", "job"]
    assert 0 < redis.ttl("batched:execution") <= 240


def test_a_batch_added_to_a_batch_keeps_its_writes_in_order(redis: Redis) -> None:
    inner = WriteBatch().hset("fleetkit:test:order", "a", 1).expire("fleetkit:test:order", 60)
    outer = WriteBatch().hset("fleetkit:test:other", "b", 2)
    inner.add_to(outer)
    outer.hset("fleetkit:test:order", "a", 3)
    assert len(outer) == 4
    outer.add_to(redis)
    assert redis.hget("fleetkit:test:order", "a") == "3"
    assert redis.hget("fleetkit:test:other", "b") == "2"
    assert 0 < redis.ttl("fleetkit:test:order") <= 60


@pytest.mark.parametrize("value", [None, True])
def test_values_redis_py_refuses_are_refused(value: object) -> None:
    with pytest.raises(TypeError, match="cannot write"):
        WriteBatch().hset("k", "field", value)
