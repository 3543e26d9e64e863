"""The Redis schema is declared once: every key the workers and the autoscaler touch in a real
run is a declared key, ours or rq's, and the documented table is the declared one."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import Worker

from fleetkit.autoscaler import manual
from fleetkit.autoscaler.holds import HoldStore
from fleetkit.autoscaler.in_memory import InMemoryCapacityProvider
from fleetkit.autoscaler.rq_source import RqQueueDepthSource
from fleetkit.autoscaler.status import fleet_status
from fleetkit.core.schema import KEYS, RedisSchema, markdown_table, rq_keys, update_document
from tests.autoscaler.test_daemon import daemon, environment
from tests.worker import jobs
from tests.worker.procs import kill_group, runs, settings, start_worker, stop, wait_for

ROOT = Path(__file__).resolve().parents[2]
# Keys the test's own job functions write (tests/worker/jobs.py), not fleetkit's.
TEST_KEYS = re.compile(r"^test:")


def test_every_key_builder_is_declared() -> None:
    built = [
        KEYS.heartbeats,
        KEYS.inflight,
        KEYS.instances,
        KEYS.queue_stats,
        KEYS.durations,
        KEYS.metrics("fleet.i-0abc.0.1a2b3c"),
        *KEYS.health("fleet.i-0abc.0.1a2b3c").all(),
        KEYS.hold("staging", "workers"),
        KEYS.leader("staging"),
        KEYS.leader_epoch("staging"),
        KEYS.decision("staging", "batch-high"),
        KEYS.members("staging"),
    ]
    declared = [KEYS.declared(key) for key in built]
    assert all(spec is not None and spec.owner == "fleetkit" for spec in declared)
    # Each builder has a row of its own: no two keys share a declaration by accident.
    assert len({spec.template for spec in declared if spec}) == len(built)
    assert KEYS.declared("fleetkit:made-up") is None
    assert KEYS.declared("myapp:cache:1") is None


def test_the_keys_keep_the_names_live_fleets_have() -> None:
    assert (KEYS.heartbeats, KEYS.inflight, KEYS.instances) == (
        "fleetkit:heartbeats",
        "fleetkit:inflight",
        "fleetkit:instances",
    )
    assert (KEYS.queue_stats, KEYS.durations) == ("fleetkit:queue-stats", "fleetkit:durations")
    assert KEYS.hold("staging", "workers") == "fleetkit:staging:hold:workers"
    assert KEYS.leader("staging") == "fleetkit:staging:autoscaler:leader"
    assert KEYS.decision("staging", "workers") == "fleetkit:staging:autoscaler:pool:workers"
    assert KEYS.members("staging") == "fleetkit:staging:autoscaler:members"
    assert RedisSchema("fk").metrics("w") == "fk:metrics:w"


def test_rqs_keys_are_rqs_own(redis: Redis) -> None:
    queue = Queue("default", connection=redis)
    job = queue.enqueue(jobs.quick)
    for key in (
        queue.key,
        queue.intermediate_queue_key,
        StartedJobRegistry(queue=queue).key,
        job.key,
        Worker.redis_worker_namespace_prefix + "w1",
    ):
        spec = KEYS.declared(key)
        assert spec is not None and spec.owner == "rq", key


def test_the_documented_table_is_the_declared_one() -> None:
    """When this fails: `python -m fleetkit.core.schema docs/architecture.md` rewrites them."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert update_document(text) == text
    ours = text.split("<!-- schema: fleetkit -->\n", 1)[1].split("<!-- /schema -->", 1)[0]
    theirs = text.split("<!-- schema: rq -->\n", 1)[1].split("<!-- /schema -->", 1)[0]
    assert ours == markdown_table(KEYS.specs())
    assert theirs == markdown_table(rq_keys())


class KeyRecorder:
    """Every key any client touches, from MONITOR (Lua's own calls included), resolved with
    Redis's own COMMAND GETKEYS.

    MONITOR's lines are parsed here rather than by redis-py's `Redis.monitor()`, which joins a
    command's arguments with spaces: GETKEYS needs each argument as it was sent.
    """

    def __init__(self, url: str) -> None:
        self.client = Redis.from_url(url)
        self.keys: dict[str, str] = {}  # key → the first command that touched it
        self._connection = self.client.connection_pool.get_connection()
        self._connection.send_command("MONITOR")
        assert self._connection.read_response() in (b"OK", "OK")
        self._stop = threading.Event()
        self._lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                line = self._connection.read_response()
            except Exception:
                return
            self._lines.append(line.decode() if isinstance(line, bytes) else str(line))

    def stop(self) -> dict[str, str]:
        self._stop.set()
        self._connection.disconnect()
        self._thread.join(timeout=5)
        lookup = Redis.from_url(_url(self.client))
        for line in self._lines:
            args = _monitor_args(line)
            if not args:
                continue
            try:
                found = lookup.command_getkeys(*args)
            except ResponseError:
                continue  # no key arguments (PING, TIME, INFO, MULTI, CLIENT…)
            for key in found:
                name = key.decode() if isinstance(key, bytes) else key
                self.keys.setdefault(name, " ".join(args[:1]))
        lookup.close()
        self.client.close()
        return self.keys


def _url(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", '"': '"', "\\": "\\"}


def _monitor_args(line: str) -> list[str]:
    """`1700000000.123 [0 127.0.0.1:5555] "SET" "k" "v"` → ["SET", "k", "v"]."""
    _, _, rest = line.partition("] ")
    return [_unescape(arg) for arg in _ARG.findall(rest)]


def _unescape(arg: str) -> str:
    out, i = [], 0
    while i < len(arg):
        if arg[i] == "\\" and i + 1 < len(arg):
            nxt = arg[i + 1]
            if nxt == "x" and i + 3 < len(arg):
                out.append(chr(int(arg[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(arg[i])
        i += 1
    return "".join(out)


@pytest.fixture
def recorder(redis_url: str) -> Iterator[KeyRecorder]:
    recording = KeyRecorder(redis_url)
    yield recording
    recording._stop.set()


def _status(redis: Redis, job: Job) -> JobStatus | None:
    return Job.fetch(job.id, connection=redis).get_status(refresh=True)


@pytest.mark.e2e
def test_every_key_touched_in_a_real_run_is_declared(
    redis_url: str, redis: Redis, tmp_path: Path, recorder: KeyRecorder
) -> None:
    queue = Queue("default", connection=redis)
    # The workers: both kinds, every way a job can end.
    forking_name, forking = start_worker(settings(redis_url, tmp_path / "f", metrics_port=None))
    _, simple = start_worker(settings(redis_url, tmp_path / "s", forking=False))
    try:
        finished = [queue.enqueue(jobs.quick, i) for i in range(4)]
        failed = queue.enqueue(jobs.failing)
        resumed = queue.enqueue(jobs.counted_steps, 3, 0.05)
        for job in [*finished, failed, resumed]:
            wait_for(
                lambda j=job: _status(redis, j) in (JobStatus.FINISHED, JobStatus.FAILED),
                30,
                f"job {job.id}",
            )
        # A job handed back on SIGTERM (twice: at once), and one recovered from a hard kill.
        handed = queue.enqueue(jobs.slow, 30)
        wait_for(lambda: runs(redis, handed.id) > 0, 20, "the slow job to start")
        runner = (
            forking
            if Job.fetch(handed.id, connection=redis).worker_name == forking_name
            else simple
        )
        survivor = simple if runner is forking else forking
        os.kill(runner.pid, signal.SIGTERM)
        time.sleep(1.5)  # a second SIGTERM within a second counts as the same one
        os.kill(runner.pid, signal.SIGTERM)
        wait_for(lambda: runner.poll() is not None, 20, "the drained worker to exit")
        wait_for(lambda: runs(redis, handed.id) > 1, 30, "the handed-back job to run again")
        kill_group(survivor)  # mid-job: the job is recovered by the next worker's sweep
        _, sweeper = start_worker(settings(redis_url, tmp_path / "w", burst=False))
        try:
            wait_for(lambda: runs(redis, handed.id) > 2, 60, "the hard-killed job to run again")
        finally:
            stop(sweeper)
    finally:
        stop(forking)
        stop(simple)

    # The autoscaler: ticks (lock, reads, records, recovery), a manual burst and its hold, status.
    env = environment()
    fleet = InMemoryCapacityProvider({"workers": (20, 8)})
    source = RqQueueDepthSource(redis, env=env.name)
    scaler = daemon(redis, source, fleet)
    for _ in range(3):
        assert scaler.tick().errors == []
    holds = HoldStore(redis, env.name)
    manual.scale(env, "workers", 3, hold_s=60, provider=fleet, holds=holds, busy=frozenset)
    fleet_status(env, connection=redis, source=source, groups=fleet.read())
    manual.release(env, "workers", holds)
    scaler.lock.release()  # type: ignore[union-attr]

    touched = recorder.stop()
    undeclared = {
        key: command
        for key, command in touched.items()
        if not TEST_KEYS.match(key) and KEYS.declared(key) is None
    }
    assert undeclared == {}
    # The run did exercise both sides: heartbeats, in-flight records, holds, the lock, rq's keys.
    families = {spec.template for key in touched if (spec := KEYS.declared(key))}
    for template in (
        KEYS.heartbeats,
        KEYS.inflight,
        KEYS.queue_stats,
        KEYS.hold("{env}", "{pool}"),
        KEYS.leader("{env}"),
        KEYS.decision("{env}", "{pool}"),
        "rq:queue:{queue}",
        "rq:job:{job}",
    ):
        assert template in families, template
