"""RqQueueDepthSource against a real redis-server, with state written by rq and Liveness."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, Worker
from rq.job import Job

from fleetkit.autoscaler.errors import SourceUnavailable
from fleetkit.autoscaler.model import Hold, QueueLoad
from fleetkit.autoscaler.rq_source import RqQueueDepthSource
from fleetkit.core.liveness import Liveness
from fleetkit.core.schema import KEYS
from tests.autoscaler.test_rates import assert_load
from tests.redis_server import free_port
from tests.worker import jobs

TTL = 10.0


def enqueue(redis: Redis, queue: str, count: int) -> list[Job]:
    q = Queue(queue, connection=redis)
    return [q.enqueue(jobs.quick) for _ in range(count)]


def start(redis: Redis, queue: str, worker: str = "w-start") -> Job:
    """Dequeue a job and start it the way an rq worker does (started registry, current_job)."""
    q = Queue(queue, connection=redis)
    q.enqueue(jobs.slow, 10)
    rq_worker = Worker([q], connection=redis, name=worker)
    dequeued = Queue.dequeue_any([q], None, connection=redis)
    assert dequeued is not None
    job, _ = dequeued
    rq_worker.prepare_execution(job)
    rq_worker.prepare_job_execution(job)
    return job


def end(redis: Redis, queue: str, count: int, seconds: float) -> None:
    """Count jobs ended the way `worker.bookkeeping` does."""
    redis.hincrby(KEYS.queue_stats, f"{queue}:done", count)
    redis.hincrbyfloat(KEYS.queue_stats, f"{queue}:seconds", seconds)


def running(redis: Redis, worker: str, job_id: str = "job-1") -> None:
    redis.hset(f"{Worker.redis_worker_namespace_prefix}{worker}", "current_job", job_id)


def age(redis: Redis, worker: str, seconds: float) -> None:
    """Move a worker's last heartbeat `seconds` into the past (Redis's clock)."""
    now_s, micros = redis.time()
    redis.zadd("fleetkit:heartbeats", {worker: now_s + micros / 1e6 - seconds}, xx=True)


class Clock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


@pytest.mark.parametrize("decode_responses", [False, True], ids=["bytes", "decoded"])
def test_one_read_of_every_pool(redis: Redis, redis_url: str, decode_responses: bool) -> None:
    enqueue(redis, "a", 3)
    start(redis, "a")
    enqueue(redis, "b", 2)
    start(redis, "g", "w-g1")
    start(redis, "g", "w-g2")
    end(redis, "g", 4, 10.0)
    Liveness(redis, ttl_s=TTL).beat("w-g1", "i-g")
    redis.set(KEYS.hold("test", "gpu"), json.dumps({"count": 2, "until": None}))
    pools = {"cpu": ["a", "b"], "gpu": ["g"], "shared": ["b", "b"], "empty": [], "idle": ["x"]}
    # rq itself needs bytes replies (its jobs are pickled); the source works with either.
    client = Redis.from_url(redis_url, decode_responses=decode_responses)
    source = RqQueueDepthSource(client, env="test")

    reading = source.read(pools)
    client.close()

    counts = {p: (load.queued, load.in_flight) for p, load in reading.loads.items()}
    assert counts == {
        "cpu": (5, 1),
        "gpu": (0, 2),
        "shared": (2, 0),
        "empty": (0, 0),
        "idle": (0, 0),
    }
    assert reading.loads["gpu"].mean_duration_s == pytest.approx(2.5)
    assert reading.busy_instances == {"i-g"}
    assert reading.workers_by_instance == {"i-g": ("w-g1",)}
    assert reading.holds == {"gpu": Hold(2, None)}


def test_busy_instances_and_workers_by_instance(redis: Redis) -> None:
    liveness = Liveness(redis, ttl_s=TTL)
    for worker, instance in [
        ("w1", "i-1"),
        ("w2", "i-1"),
        ("w3", "i-2"),
        ("w4", "i-3"),
        ("w6", "i-4"),
    ]:
        liveness.beat(worker, instance)
    liveness.beat("w5")  # instance unknown
    running(redis, "w1")
    running(redis, "w4")  # its heartbeat lags: it may still be running, so it counts
    age(redis, "w4", TTL + 1)
    running(redis, "w5")  # on no known instance
    running(redis, "w6")
    redis.hdel(f"{Worker.redis_worker_namespace_prefix}w6", "current_job")  # its job ended

    reading = RqQueueDepthSource(redis).read({})

    assert reading.busy_instances == {"i-1", "i-3"}
    assert reading.workers_by_instance == {
        "i-1": ("w1", "w2"),
        "i-2": ("w3",),
        "i-3": ("w4",),
        "i-4": ("w6",),
    }


def test_a_real_rq_worker_running_a_job_makes_its_instance_busy(redis: Redis) -> None:
    Liveness(redis, ttl_s=TTL).beat("w-real", "i-real")
    Liveness(redis, ttl_s=TTL).beat("w-idle", "i-idle")
    source = RqQueueDepthSource(redis)
    job = start(redis, "default", "w-real")

    during = source.read({"p": ["default"]})
    Worker(["default"], connection=redis, name="w-real").set_current_job_id(None)
    after = source.read({"p": ["default"]})

    assert job.worker_name == "w-real"
    assert during.busy_instances == {"i-real"}
    assert (during.loads["p"].queued, during.loads["p"].in_flight) == (0, 1)
    assert after.busy_instances == frozenset()


def test_the_in_flight_record_alone_makes_an_instance_busy(redis: Redis) -> None:
    # Between fleetkit's record and rq's current_job (a forking worker before its horse runs).
    liveness = Liveness(redis, ttl_s=TTL)
    liveness.beat("w1", "i-1")
    liveness.beat("w2", "i-2")
    redis.hset(KEYS.inflight, "w1", "job-1")

    assert RqQueueDepthSource(redis).read({}).busy_instances == {"i-1"}

    redis.hdel(KEYS.inflight, "w1")  # the job ended
    assert RqQueueDepthSource(redis).read({}).busy_instances == frozenset()


def test_a_forgotten_worker_no_longer_counts(redis: Redis) -> None:
    liveness = Liveness(redis, ttl_s=TTL)
    liveness.beat("w1", "i-1")
    running(redis, "w1")
    liveness.forget("w1")  # a clean exit, or the sweep after recovering it

    reading = RqQueueDepthSource(redis).read({})

    assert reading.busy_instances == frozenset()
    assert reading.workers_by_instance == {}


HOLDS = [
    ("until", json.dumps({"count": 3, "until": 1_700_000_000.5}), Hold(3, 1_700_000_000.5)),
    ("integer-until", json.dumps({"count": 2, "until": 1_700_000_000}), Hold(2, 1.7e9)),
    ("until-released", json.dumps({"count": 1, "until": None}), Hold(1, None)),
    ("no-until-key", json.dumps({"count": 0}), Hold(0, None)),
    ("no-hold", None, None),
    ("not-json", "three please", None),
    ("not-an-object", json.dumps([3, None]), None),
    ("negative-count", json.dumps({"count": -1, "until": None}), None),
    ("fractional-count", json.dumps({"count": 1.5, "until": None}), None),
    ("boolean-count", json.dumps({"count": True, "until": None}), None),
    ("string-until", json.dumps({"count": 1, "until": "tomorrow"}), None),
    ("not-utf8", b"\xff\xfe", None),
]


@pytest.mark.parametrize(("raw", "expected"), [h[1:] for h in HOLDS], ids=[h[0] for h in HOLDS])
def test_holds_parsed_and_bad_ones_ignored_with_a_warning(
    redis: Redis, caplog: pytest.LogCaptureFixture, raw: str | bytes | None, expected: Hold | None
) -> None:
    if raw is not None:
        redis.set(KEYS.hold("test", "cpu"), raw)
    source = RqQueueDepthSource(redis, env="test")

    with caplog.at_level(logging.WARNING, logger="fleetkit.autoscaler.rq_source"):
        reading = source.read({"cpu": ["a"], "gpu": ["b"]})

    assert reading.holds == ({} if expected is None else {"cpu": expected})
    warned = [r.getMessage() for r in caplog.records]
    if raw is not None and expected is None:
        assert len(warned) == 1
        assert "pool cpu at fleetkit:test:hold:cpu" in warned[0]
    else:
        assert warned == []


def test_holds_not_read_without_an_environment(redis: Redis) -> None:
    redis.set(KEYS.hold("test", "cpu"), json.dumps({"count": 3, "until": None}))
    reading = RqQueueDepthSource(redis).read({"cpu": ["a"]})
    assert reading.holds == {}


def test_rates_between_two_reads(redis: Redis) -> None:
    enqueue(redis, "a", 10)
    end(redis, "a", 6, 30.0)  # ended before the first read: only the cumulative mean knows them
    source = RqQueueDepthSource(redis, clock=Clock(100.0, 110.0))

    first = source.read({"cpu": ["a"]})
    for _ in range(4):  # 4 jobs taken and ended, 6 arrive, 1 starts
        Queue.dequeue_any([Queue("a", connection=redis)], None, connection=redis)
    end(redis, "a", 4, 8.0)
    enqueue(redis, "a", 5)
    start(redis, "a")
    second = source.read({"cpu": ["a"]})

    assert_load(first.loads["cpu"], QueueLoad(10, 0, mean_duration_s=5.0))
    # Backlog 10 → 12 while 4 ended: 6 arrived in 10 s.
    assert_load(
        second.loads["cpu"],
        QueueLoad(11, 1, arrival_rate=0.6, completion_rate=0.4, mean_duration_s=2.0),
    )


def test_rates_by_the_redis_clock_by_default(redis: Redis) -> None:
    enqueue(redis, "a", 10)
    source = RqQueueDepthSource(redis)

    first = source.read({"cpu": ["a"]}).loads["cpu"]
    end(redis, "a", 2, 4.0)
    enqueue(redis, "a", 3)
    second = source.read({"cpu": ["a"]}).loads["cpu"]

    assert (first.arrival_rate, first.completion_rate) == (None, None)
    assert second.arrival_rate is not None and second.completion_rate is not None
    # Whatever the interval Redis measured, 5 arrived (3 queued, 2 ended) for 2 completions.
    assert second.arrival_rate / second.completion_rate == pytest.approx(2.5)


def test_rate_window_per_pool(redis: Redis) -> None:
    source = RqQueueDepthSource(
        redis,
        rate_window_s={"fast": 10.0},  # "slow" gets the 60 s default
        clock=Clock(0.0, 30.0, 40.0),
    )
    pools = {"fast": ["f"], "slow": ["s"]}
    source.read(pools)
    source.read(pools)
    end(redis, "f", 10, 10.0)
    end(redis, "s", 10, 10.0)

    loads = source.read(pools).loads

    assert loads["fast"].completion_rate == pytest.approx(1.0)  # 10 over 30 → 40
    assert loads["slow"].completion_rate == pytest.approx(0.25)  # 10 over 0 → 40


def test_a_pool_dropped_from_a_read_starts_over(redis: Redis) -> None:
    source = RqQueueDepthSource(redis, clock=Clock(0.0, 10.0, 20.0))
    source.read({"cpu": ["a"]})
    source.read({"gpu": ["b"]})
    again = source.read({"cpu": ["a"]}).loads["cpu"]
    assert (again.arrival_rate, again.completion_rate) == (None, None)


SIZES = [
    # (id, workers, queues, round trips)
    ("no-live-worker", 0, 100, 1),
    ("one-worker-one-queue", 1, 1, 1),
    ("1000-workers-100-queues", 1_000, 100, 1),
]


@pytest.mark.parametrize(
    ("workers", "queues", "expected"), [s[1:] for s in SIZES], ids=[s[0] for s in SIZES]
)
def test_round_trips_per_read_do_not_grow_with_the_fleet(
    redis: Redis, round_trips: Callable[[], int], workers: int, queues: int, expected: int
) -> None:
    liveness = Liveness(redis, ttl_s=TTL)
    for i in range(workers):
        liveness.beat(f"w{i:04}", f"i-{i // 4:03}")  # four workers per instance
    with redis.pipeline(transaction=False) as pipe:
        for i in range(0, workers, 8):  # one worker of every other instance runs a job
            pipe.hset(f"{Worker.redis_worker_namespace_prefix}w{i:04}", "current_job", f"j{i}")
        pipe.execute()
    for q in range(queues):
        enqueue(redis, f"q{q:03}", 1)
    pools = {f"pool{p}": [f"q{q:03}" for q in range(p, queues, 10)] for p in range(10)}
    source = RqQueueDepthSource(redis, env="test")
    redis.ping()  # connected before counting: the handshake is not the read's
    before = round_trips()

    reading = source.read(pools)

    assert round_trips() - before == expected
    assert sum(load.queued for load in reading.loads.values()) == queues
    assert len(reading.workers_by_instance) == (workers + 3) // 4
    assert len(reading.busy_instances) == (workers + 7) // 8


@pytest.fixture
def unreachable() -> Iterator[Redis]:
    client = Redis(port=free_port(), retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    yield client
    client.close()


def test_unreachable_redis_is_source_unavailable(unreachable: Redis) -> None:
    with pytest.raises(SourceUnavailable, match="cannot read queues from Redis") as raised:
        RqQueueDepthSource(unreachable).read({"cpu": ["a"]})
    assert "\n" not in str(raised.value)
    assert "ConnectionError" in str(raised.value)


def test_a_redis_error_reply_is_source_unavailable(redis: Redis) -> None:
    redis.set("rq:queue:a", "not a list")
    with pytest.raises(SourceUnavailable, match="WRONGTYPE"):
        RqQueueDepthSource(redis).read({"cpu": ["a"]})
