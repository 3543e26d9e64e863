"""End to end: the `autoscaler` CLI in subprocesses against a stack deployed into the moto HTTP
server and a real redis-server. Spot shortfalls are not something moto can show: those are in
test_daemon (in-memory provider) and test_asg (Stubber).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from fleetkit.autoscaler.asg import AsgCapacityProvider
from fleetkit.autoscaler.daemon import Autoscaler
from fleetkit.autoscaler.holds import HoldStore
from fleetkit.autoscaler.leader import LeaderLock
from fleetkit.autoscaler.manual import scale
from fleetkit.autoscaler.metrics import AutoscalerMetrics
from fleetkit.autoscaler.policy import QueueDrainPolicy
from fleetkit.autoscaler.rq_source import RqQueueDepthSource
from fleetkit.core.environment import ENVIRONMENTS_DIR, load_environment
from fleetkit.core.liveness import HEARTBEAT_TTL_S, Liveness
from fleetkit.core.schema import KEYS
from tests.core.test_handback import running_job
from tests.redis_server import RedisServer, free_port
from tests.worker import jobs
from tests.worker.procs import wait_for

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
STACK = "fleetkit-local"


def autoscaler(
    *args: str, redis_url: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEETKIT_REDIS_URL": redis_url, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-c", "from fleetkit.autoscaler.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def env_file(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local environment with a 500-instance pool and no stabilization wait, deployed once."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    text = 'name = "local"\n' + (ENVIRONMENTS_DIR / "local.toml").read_text()
    text = text.replace("max_size = 20", "max_size = 500")
    text += "\n[pools.workers.scaling]\nstabilization_window_s = 0\n"
    path = tmp_path_factory.mktemp("env") / "local.toml"
    path.write_text(text)
    deployed = subprocess.run(
        [sys.executable, "-m", "fleetkit.infra", "deploy", "--env", str(path), "--yes"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stderr
    return path


def groups() -> dict[str, dict[str, Any]]:
    client = boto3.client("autoscaling", region_name=REGION)
    found = {}
    for group in client.describe_auto_scaling_groups()["AutoScalingGroups"]:
        tags = {t["Key"]: t["Value"] for t in group["Tags"]}
        if tags.get("fleetkit:env") == "local" and tags.get("fleetkit:role") == "worker":
            found[tags["fleetkit:capacity"]] = group
    return found


def spot_ids() -> set[str]:
    return {i["InstanceId"] for i in groups()["spot"]["Instances"]}


def set_spot(count: int) -> None:
    client = boto3.client("autoscaling", region_name=REGION)
    for group in groups().values():
        client.set_desired_capacity(
            AutoScalingGroupName=group["AutoScalingGroupName"], DesiredCapacity=0
        )
    client.set_desired_capacity(
        AutoScalingGroupName=groups()["spot"]["AutoScalingGroupName"], DesiredCapacity=count
    )


@pytest.fixture
def fleet(env_file: Path, redis_url: str) -> Iterator[Path]:
    set_spot(0)
    yield env_file
    set_spot(0)


def test_a_burst_scales_out_in_one_tick(fleet: Path, redis_url: str) -> None:
    queue = Queue("default", connection=Redis.from_url(redis_url))
    for _ in range(100):
        queue.enqueue(jobs.slow, 1)

    ran = autoscaler("run", "--env", str(fleet), "--once", redis_url=redis_url)

    assert ran.returncode == 0, ran.stderr
    # 100 queued * 60 s (default duration) ÷ 300 s drain target = 20 processes, 2 per instance
    assert groups()["spot"]["DesiredCapacity"] == 10
    assert len(spot_ids()) == 10
    assert '"action":"scale-out"' in ran.stderr


def test_idle_instances_are_removed_and_the_busy_one_kept(fleet: Path, redis_url: str) -> None:
    set_spot(3)
    instances = sorted(spot_ids())
    redis = Redis.from_url(redis_url)
    liveness = Liveness(redis, ttl_s=10)
    for n, instance in enumerate(instances):
        liveness.beat(f"w{n}", instance)
    job = running_job(redis, worker="w1")  # in rq's started registry: one job in flight
    redis.hset("rq:worker:w1", "current_job", job.id)

    ran = autoscaler("run", "--env", str(fleet), "--once", redis_url=redis_url)

    assert ran.returncode == 0, ran.stderr
    assert spot_ids() == {instances[1]}
    assert groups()["spot"]["DesiredCapacity"] == 1
    assert '"action":"scale-in"' in ran.stderr


def test_scale_500_holds_against_an_empty_queue_until_released(fleet: Path, redis_url: str) -> None:
    ran = autoscaler("scale", "workers", "500", "--env", str(fleet), "--json", redis_url=redis_url)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["desired"] == {"spot": 500}
    assert groups()["spot"]["DesiredCapacity"] == 500
    assert len(spot_ids()) == 500
    redis = Redis.from_url(redis_url)
    assert redis.pttl(KEYS.hold("local", "workers")) > 29 * 60 * 1000

    tick = autoscaler("run", "--env", str(fleet), "--once", redis_url=redis_url)
    assert tick.returncode == 0, tick.stderr
    assert groups()["spot"]["DesiredCapacity"] == 500  # empty queue, yet held
    assert "hold ≥ 500" in tick.stderr

    released = autoscaler("release", "workers", "--env", str(fleet), redis_url=redis_url)
    assert released.returncode == 0, released.stderr
    assert "hold released" in released.stdout
    assert redis.get(KEYS.hold("local", "workers")) is None


def test_scale_500_is_one_set_desired_capacity_call(fleet: Path, redis_url: str) -> None:
    env = load_environment(str(fleet))
    client = boto3.client("autoscaling", region_name=REGION)
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        "before-parameter-build.autoscaling.SetDesiredCapacity",
        lambda params, **kw: calls.append(dict(params)),
    )
    provider = AsgCapacityProvider(client, "local", ec2=boto3.client("ec2", region_name=REGION))
    scale(
        env,
        "workers",
        500,
        hold_s=0,
        provider=provider,
        holds=HoldStore(Redis.from_url(redis_url), "local"),
        busy=lambda: frozenset(),
    )
    spot = groups()["spot"]
    sent = [(c["AutoScalingGroupName"], c["DesiredCapacity"]) for c in calls]
    assert sent == [(spot["AutoScalingGroupName"], 500)]
    assert spot["DesiredCapacity"] == 500


BAD_SCALE = [
    ("unknown-pool", ["nope", "5"], "pool 'nope'"),
    ("negative", ["workers", "-1"], "N -1"),
    ("above-max", ["workers", "501"], "N 501"),
    ("not-a-number", ["workers", "many"], "N 'many'"),
    ("bad-hold", ["workers", "5", "--hold", "soon"], "--hold 'soon'"),
    ("hold-too-long", ["workers", "5", "--hold", "8d"], "--hold '8d': at most 7d"),
]


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in BAD_SCALE], ids=[c[0] for c in BAD_SCALE]
)
def test_bad_scale_arguments_exit_2_and_change_nothing(
    fleet: Path, redis_url: str, args: list[str], message: str
) -> None:
    set_spot(2)
    before = spot_ids()
    redis = Redis.from_url(redis_url)
    HoldStore(redis, "local").set("workers", 2, 600, by="earlier")
    hold = redis.get(KEYS.hold("local", "workers"))

    ran = autoscaler("scale", *args, "--env", str(fleet), redis_url=redis_url)

    assert ran.returncode == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], ran.stderr
    assert lines[0].startswith("autoscaler: error: ")
    assert groups()["spot"]["DesiredCapacity"] == 2
    assert spot_ids() == before
    assert redis.get(KEYS.hold("local", "workers")) == hold
    assert redis.pttl(KEYS.hold("local", "workers")) > 0


def test_redis_stopped_keeps_capacity(fleet: Path, tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    Queue("default", connection=Redis.from_url(server.url)).enqueue(jobs.slow, 1)
    set_spot(3)
    before = spot_ids()
    server.stop()

    ran = autoscaler("run", "--env", str(fleet), "--once", redis_url=server.url)

    assert ran.returncode == 1
    assert "keeping capacity" in ran.stderr
    assert groups()["spot"]["DesiredCapacity"] == 3
    assert spot_ids() == before
    # --once does not wait for Redis: the tick's error is its last line.
    assert ran.stderr.splitlines()[-1].startswith(
        "autoscaler: error: cannot take the leader lock in Redis: cannot be reached "
    )


UNREACHABLE_REDIS = [
    # (id, arguments after the command's name, what its one line starts with)
    ("status", ["status"], "cannot read queues from Redis: cannot be reached (ConnectionError: "),
    ("status-json", ["status", "--json"], "cannot read queues from Redis: cannot be reached "),
    (
        "scale-up",
        ["scale", "workers", "5"],
        "cannot read the hold of pool workers from Redis: cannot be reached (ConnectionError: ",
    ),
    (
        "scale-down",
        ["scale", "workers", "0"],
        "cannot read queues from Redis: cannot be reached (ConnectionError: ",
    ),
    (
        "release",
        ["release", "workers"],
        "cannot end the hold of pool workers in Redis: cannot be reached (ConnectionError: ",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in UNREACHABLE_REDIS], ids=[c[0] for c in UNREACHABLE_REDIS]
)
def test_commands_without_redis_say_so_in_one_line_exit_1_and_change_nothing(
    fleet: Path, args: list[str], message: str
) -> None:
    set_spot(2)
    before = spot_ids()
    closed = f"redis://127.0.0.1:{free_port()}/0"

    ran = autoscaler(*args, "--env", str(fleet), redis_url=closed, timeout=60)

    assert ran.returncode == 1
    assert ran.stdout == ""
    assert ran.stderr.splitlines() == [ran.stderr.strip()], ran.stderr
    assert ran.stderr.startswith(f"autoscaler: error: {message}")
    assert groups()["spot"]["DesiredCapacity"] == 2
    assert spot_ids() == before


def test_two_daemons_one_acts_and_sigterm_stops_both(fleet: Path, redis_url: str) -> None:
    queue = Queue("default", connection=Redis.from_url(redis_url))
    for _ in range(10):
        queue.enqueue(jobs.slow, 1)
    env = {**os.environ, "FLEETKIT_REDIS_URL": redis_url}
    args = ["run", "--env", str(fleet), "--interval", "0.5", "--metrics-port", "0"]
    daemons = [
        subprocess.Popen(
            [sys.executable, "-c", "from fleetkit.autoscaler.cli import main; main()", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        wait_for(lambda: groups()["spot"]["DesiredCapacity"] == 1, 30, "a daemon to scale out")
        time.sleep(2)  # several ticks each
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        logs = [d.communicate(timeout=20)[1] for d in daemons]
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                daemon.kill()
    assert [d.returncode for d in daemons] == [0, 0]
    acting = [log for log in logs if '"action":"scale-out"' in log]
    standby = [log for log in logs if "standby: another daemon holds the leader lock" in log]
    assert len(acting) == 1 and len(standby) == 1
    assert "standby" not in acting[0]


def test_status_shows_groups_and_the_last_decision(fleet: Path, redis_url: str) -> None:
    Queue("default", connection=Redis.from_url(redis_url)).enqueue(jobs.slow, 1)
    assert autoscaler("run", "--env", str(fleet), "--once", redis_url=redis_url).returncode == 0

    ran = autoscaler("status", "--env", str(fleet), "--json", redis_url=redis_url)

    assert ran.returncode == 0, ran.stderr
    pool = json.loads(ran.stdout)["pools"]["workers"]
    assert pool["load"]["queued"] == 1
    assert pool["groups"]["spot"]["desired"] == 1
    assert pool["groups"]["on-demand"]["desired"] == 0
    assert pool["last_decision"]["action"] == "scale-out"
    assert pool["target"] == 1
    text = autoscaler("status", "--env", str(fleet), redis_url=redis_url)
    assert text.returncode == 0 and "last decision" in text.stdout


def test_run_once_requeues_the_job_of_a_dead_worker(fleet: Path, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    # The sweep waits until Redis has been up for a heartbeat TTL (a fresh test server may not be).
    wait_for(
        lambda: redis.info("server")["uptime_in_seconds"] >= HEARTBEAT_TTL_S,
        HEARTBEAT_TTL_S + 20,
        "Redis up for a heartbeat TTL",
    )
    waiting = Queue("default", connection=redis).enqueue(jobs.slow, 1)
    job = running_job(redis, worker="w1")
    liveness = Liveness(redis, ttl_s=HEARTBEAT_TTL_S)
    liveness.beat("w1")
    redis.hset(KEYS.inflight, "w1", job.id)
    redis.zadd(KEYS.heartbeats, {"w1": 0})  # it stopped beating long ago

    ran = autoscaler("run", "--env", str(fleet), "--once", redis_url=redis_url)

    assert ran.returncode == 0, ran.stderr
    assert Job.fetch(job.id, connection=redis).get_status() == JobStatus.QUEUED
    assert Queue("default", connection=redis).get_job_ids() == [job.id, waiting.id]


def test_status_shows_the_rates_the_daemon_measured(fleet: Path, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    env = load_environment(str(fleet))
    queue = Queue("default", connection=redis)
    queued = [queue.enqueue(jobs.slow, 1) for _ in range(10)]
    clock = iter([1_000.0, 1_010.0])
    daemon = Autoscaler(
        env,
        connection=redis,
        source=RqQueueDepthSource(redis, env="local", clock=lambda: next(clock)),
        provider=AsgCapacityProvider(
            boto3.client("autoscaling", region_name=REGION),
            "local",
            ec2=boto3.client("ec2", region_name=REGION),
        ),
        policy=QueueDrainPolicy(),
        lock=LeaderLock(redis, "local", ttl_s=30),
        metrics=AutoscalerMetrics(interval_s=10),
    )
    daemon.tick()
    for job in queued[:4]:  # four jobs of 2 s each end in the next 10 s; none arrives
        redis.lrem(queue.key, 0, job.id)
    redis.hincrby(KEYS.queue_stats, "default:done", 4)
    redis.hincrbyfloat(KEYS.queue_stats, "default:seconds", 8.0)
    assert not daemon.tick().errors

    ran = autoscaler("status", "--env", str(fleet), "--json", redis_url=redis_url)

    assert ran.returncode == 0, ran.stderr
    load = json.loads(ran.stdout)["pools"]["workers"]["load"]
    assert load["queued"] == 6
    assert load["completion_rate"] == pytest.approx(0.4)
    assert load["arrival_rate"] == pytest.approx(0.0)
    assert load["mean_duration_s"] == pytest.approx(2.0)
    text = autoscaler("status", "--env", str(fleet), redis_url=redis_url)
    assert text.returncode == 0, text.stderr
    assert "arrivals 0/s, completions 0.4/s, mean job 2s" in text.stdout


def test_health_and_metrics_report_a_redis_outage(fleet: Path, tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    queue = Queue("default", connection=Redis.from_url(server.url))
    for _ in range(30):  # 30 * 60 s ÷ 300 s = 6 processes: the 3 instances are all needed
        queue.enqueue(jobs.slow, 1)
    set_spot(3)
    before = spot_ids()
    assert len(before) == 3
    port = free_port()
    command = ["-c", "from fleetkit.autoscaler.cli import main; main()", "run", "--env", str(fleet)]
    daemon = subprocess.Popen(
        [sys.executable, *command, "--interval", "0.5", "--metrics-port", str(port)],
        env={**os.environ, "FLEETKIT_REDIS_URL": server.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def health() -> tuple[int, dict[str, Any]]:
        try:
            answer = requests.get(f"{base}/healthz", timeout=2)
        except requests.ConnectionError:
            return 0, {}
        return answer.status_code, answer.json()

    def ticks() -> float:
        metrics = requests.get(f"{base}/metrics", timeout=2).text
        (line,) = [
            m for m in metrics.splitlines() if m.startswith("fleetkit_autoscaler_ticks_total")
        ]
        return float(line.split()[-1])

    try:
        wait_for(lambda: health()[0] == 200, 30, "the daemon to report healthy")
        assert health()[1]["leader"] is True
        metrics = requests.get(f"{base}/metrics", timeout=2).text
        assert 'fleetkit_autoscaler_desired_capacity{capacity="spot",pool="workers"} 3.0' in metrics

        server.stop()
        wait_for(lambda: health()[0] == 503, 30, "the daemon to report the outage")
        assert "redis unreadable" in health()[1]["reasons"]
        metrics = requests.get(f"{base}/metrics", timeout=2).text
        assert 'fleetkit_autoscaler_data_available{source="redis"} 0.0' in metrics
        during = ticks()
        wait_for(lambda: ticks() >= during + 2, 30, "two more ticks without Redis")
        assert groups()["spot"]["DesiredCapacity"] == 3
        assert spot_ids() == before

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        server.stop()
