"""Recovery after a tick: dead workers' jobs back at the front of their queue, at once for an
instance that left its group, never right after a Redis restart. A real Redis throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider, InMemoryQueueDepthSource
from fleetkit.core.liveness import Liveness
from fleetkit.core.schema import KEYS
from tests.autoscaler.test_daemon import Clock, daemon, provider, reading
from tests.core.test_handback import running_job
from tests.redis_server import RedisServer
from tests.worker import jobs
from tests.worker.procs import wait_for

# Short, so that a Redis server is soon "up for a TTL"; the workers' beats use the same.
TTL = 2.0


def uptime(redis: Redis) -> int:
    return int(redis.info("server")["uptime_in_seconds"])


def wait_until_up_for(redis: Redis, seconds: float) -> None:
    wait_for(lambda: uptime(redis) >= seconds, seconds + 10, f"Redis up for {seconds:g}s")


def busy_worker(redis: Redis, worker: str, instance: str | None = None) -> Job:
    """A worker running a job, beating now."""
    job = running_job(redis, worker=worker)
    liveness = Liveness(redis, ttl_s=TTL)
    liveness.beat(worker, instance)
    redis.hset(KEYS.inflight, worker, job.id)
    return job


def kill(redis: Redis, worker: str) -> None:
    """Its last heartbeat long ago: the worker is dead to any sweep."""
    redis.zadd(KEYS.heartbeats, {worker: 0})


def on_record(redis: Redis, worker: str) -> bool:
    return redis.zscore(KEYS.heartbeats, worker) is not None


def test_a_dead_workers_job_goes_back_to_the_front_on_the_first_tick(redis: Redis) -> None:
    waiting = Queue("default", connection=redis).enqueue(jobs.slow, 1)
    job = busy_worker(redis, "w1")
    kill(redis, "w1")
    wait_until_up_for(redis, TTL)
    # A brand-new daemon, one tick: what `autoscaler run --once` does.
    scaler = daemon(
        redis, InMemoryQueueDepthSource(reading(in_flight=1)), provider(), heartbeat_ttl_s=TTL
    )

    report = scaler.tick()

    assert report.recovered == 1 and not report.errors
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED
    assert Queue("default", connection=redis).get_job_ids() == [job.id, waiting.id]
    assert not on_record(redis, "w1")
    assert "fleetkit_autoscaler_recovered_jobs_total 1.0" in scaler.metrics.render().decode()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, appendonly=True).start()  # its data survives a restart
    yield server
    server.stop()


def test_no_sweep_until_a_restarted_redis_has_been_up_for_a_heartbeat_ttl(
    restartable: RedisServer,
) -> None:
    ttl = 5.0  # longer here: the first tick must come well within a TTL of the restart
    with Redis.from_url(restartable.url) as before:
        job = busy_worker(before, "w1")
        kill(before, "w1")  # as every heartbeat looks when Redis comes back after a while
    restartable.restart()
    redis = Redis.from_url(restartable.url)
    assert on_record(redis, "w1")  # the data survived the restart
    source = InMemoryQueueDepthSource(reading(in_flight=1))
    scaler = daemon(redis, source, provider(), heartbeat_ttl_s=ttl)

    report = scaler.tick()

    assert uptime(redis) < ttl  # the premise: the server restarted a moment ago
    assert report.recovered == 0 and not report.errors
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.STARTED
    assert on_record(redis, "w1")

    wait_until_up_for(redis, ttl)
    assert scaler.tick().recovered == 1
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED
    redis.close()


def test_no_sweep_within_a_ttl_of_the_daemon_losing_redis(redis: Redis) -> None:
    job = busy_worker(redis, "w1")
    kill(redis, "w1")
    wait_until_up_for(redis, TTL)
    source = InMemoryQueueDepthSource(reading(in_flight=1))
    clock = Clock()
    scaler = daemon(redis, source, provider(), clock=clock, heartbeat_ttl_s=TTL)
    source.fail = True  # e.g. a failover: the workers could not beat either
    scaler.tick()
    source.fail = False

    assert scaler.tick().recovered == 0
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.STARTED
    clock.tick(TTL)
    assert scaler.tick().recovered == 1


def test_jobs_of_an_instance_that_left_its_group_are_requeued_at_once(redis: Redis) -> None:
    fleet = provider()
    fleet.set_desired(fleet.read()["workers"].spot, 1)
    instance = fleet.read()["workers"].spot.instances[0].id
    job = busy_worker(redis, "w1", instance)  # its heartbeat is fresh: the sweep would wait
    source = InMemoryQueueDepthSource(
        reading(in_flight=1, workers_by_instance={instance: ("w1",)}, busy_instances={instance})
    )
    scaler = daemon(redis, source, fleet)
    assert scaler.tick().recovered == 0  # in its group, working
    fleet.terminate(instance)  # e.g. a spot reclaim that skipped the drain

    report = scaler.tick()

    assert report.recovered == 1
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED


def test_a_new_daemon_knows_the_instances_the_previous_one_saw(redis: Redis) -> None:
    fleet = provider()
    fleet.set_desired(fleet.read()["workers"].spot, 1)
    instance = fleet.read()["workers"].spot.instances[0].id
    job = busy_worker(redis, "w1", instance)
    source = InMemoryQueueDepthSource(
        reading(in_flight=1, workers_by_instance={instance: ("w1",)}, busy_instances={instance})
    )
    first = daemon(redis, source, fleet, owner="a")
    first.run(10, once=True)  # one tick, then it stops and lets go of the lock
    assert instance in (redis.get(KEYS.members("test")) or b"").decode()
    fleet.terminate(instance)  # while no daemon runs

    second = daemon(redis, source, fleet, owner="b")
    report = second.tick()

    assert report.leader and report.recovered == 1
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED


def test_a_worker_on_an_instance_never_in_our_groups_is_left_alone(redis: Redis) -> None:
    job = busy_worker(redis, "w1", "i-0notours")
    fleet = provider()
    fleet.terminated.append("i-0notours")  # EC2 would not know it either
    source = InMemoryQueueDepthSource(
        reading(in_flight=1, workers_by_instance={"i-0notours": ("w1",)})
    )

    assert daemon(redis, source, fleet).tick().recovered == 0
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.STARTED


def test_a_detached_instance_that_still_runs_keeps_its_jobs(redis: Redis) -> None:
    fleet = InMemoryCapacityProvider({"workers": (20, 8)})
    fleet.set_desired(fleet.read()["workers"].spot, 1)
    instance = fleet.read()["workers"].spot.instances[0].id
    job = busy_worker(redis, "w1", instance)
    source = InMemoryQueueDepthSource(
        reading(in_flight=1, workers_by_instance={instance: ("w1",)}, busy_instances={instance})
    )
    scaler = daemon(redis, source, fleet)
    scaler.tick()
    fleet.set_desired(fleet.read()["workers"].spot, 0)  # out of the group…
    fleet.terminated.remove(instance)  # …but EC2 says it still runs (detached)

    assert scaler.tick().recovered == 0
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.STARTED
