"""`make bench-worker`: fleetkit's worker against plain `rq worker`, same mode, same Redis.

1. Throughput: 1,000 trivial jobs enqueued first, one worker process in burst mode, wall time;
   plain rq and fleetkit alternate for `--rounds` rounds and the medians are compared.
2. Pickup latency: 1,000 trivial jobs enqueued one at a time to an idle worker,
   enqueued_at → started_at (rq's own timestamps: set by the producer, and by the worker just
   before it calls the job function); `--latency-rounds` alternated rounds, percentiles over
   every sample, each round's p99 printed.
3. Chaos: 10,000 jobs, 8 worker processes; 30 % of them hard-killed (with their horse) and 30 %
   given an interruption notice while jobs run; replacements started. Counts lost and failed jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.jobs import DONE_KEY, mark, noop  # noqa: E402
from fleetkit.worker.settings import WorkerSettings  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.worker.procs import kill_group  # noqa: E402

RQ_CLASSES = {"forking": "rq.worker.Worker", "simple": "rq.worker.SimpleWorker"}


def enqueue_many(queue: Queue, func: Callable[[int], int], jobs: int) -> list[str]:
    with queue.connection.pipeline() as pipe:
        ids = [queue.enqueue(func, i, pipeline=pipe).id for i in range(jobs)]
        pipe.execute()
    return ids


def worker_command(kind: str, mode: str, url: str, run_dir: Path, burst: bool) -> list[str]:
    if kind == "rq":
        command = [
            str(Path(sys.executable).parent / "rq"),
            "worker",
            "-u",
            url,
            "-w",
            RQ_CLASSES[mode],
            "--logging_level",
            "WARNING",
            "default",
        ]
        return [*command, "--burst"] if burst else command
    settings = WorkerSettings(
        redis_url=url,
        queues=("default",),
        forking=mode == "forking",
        burst=burst,
        run_dir=str(run_dir),
        log_level="WARNING",  # as plain rq above: per-job log lines cost both the same
    )
    name = f"bench.{kind}.{mode}.{time.monotonic_ns()}"
    return [sys.executable, "-m", "fleetkit.worker.process", settings.model_dump_json(), name]


LOGS: Path | None = None  # --logs DIR: each worker process's output, for post-mortems


def spawn(command: list[str]) -> subprocess.Popen[bytes]:
    output: Any = subprocess.DEVNULL
    if LOGS is not None:
        output = (LOGS / f"worker-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=output,
        stderr=output,
        start_new_session=True,
    )


def throughput(kind: str, mode: str, url: str, tmp: Path, jobs: int) -> float:
    """Jobs per second from the first job's start to the last job's end.

    Measured on the jobs' own timestamps, so interpreter start-up is not counted as per-job cost.
    """
    redis = Redis.from_url(url)
    redis.flushall()
    queue = Queue("default", connection=redis)
    ids = enqueue_many(queue, noop, jobs)
    spawn(worker_command(kind, mode, url, tmp, burst=True)).wait(timeout=600)
    done = [j for j in Job.fetch_many(ids, connection=redis) if j is not None]
    if len(done) != jobs or any(j.get_status() != JobStatus.FINISHED for j in done):
        raise SystemExit(f"{kind}/{mode}: not every one of {jobs} jobs finished")
    first = min(j.started_at for j in done if j.started_at)
    last = max(j.ended_at for j in done if j.ended_at)
    return jobs / (last - first).total_seconds()


def pickup(kind: str, mode: str, url: str, tmp: Path, jobs: int) -> list[float]:
    redis = Redis.from_url(url)
    redis.flushall()
    queue = Queue("default", connection=redis)
    worker = spawn(worker_command(kind, mode, url, tmp, burst=False))
    latencies: list[float] = []
    try:
        time.sleep(1.5)  # let it reach its blocking dequeue
        for i in range(jobs):
            job = queue.enqueue(noop, i)
            # Block on rq's result stream rather than poll: a polling client would compete
            # with the worker for the machine's two cores while it is being measured.
            if job.latest_result(timeout=30) is None:
                raise SystemExit(f"{kind}/{mode}: job {job.id} did not finish in 30 s")
            job.refresh()
            assert job.enqueued_at and job.started_at
            latencies.append((job.started_at - job.enqueued_at).total_seconds() * 1000)
            time.sleep(0.01)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    return latencies


class StealMeter:
    """Share of CPU time the hypervisor gave other guests since creation (/proc/stat `steal`)."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return 0, 0
        return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])

    def percent(self) -> float:
        steal, total = self._read()
        elapsed = total - self.start[1]
        return 100 * (steal - self.start[0]) / elapsed if elapsed > 0 else 0.0


def percentile(values: list[float], p: int) -> float:
    """The p-th percentile (1 ≤ p ≤ 99), interpolated between the samples around it."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def chaos(url: str, tmp: Path, jobs: int, processes: int) -> dict[str, int]:
    redis = Redis.from_url(url)
    redis.flushall()
    queue = Queue("default", connection=redis)
    ids = enqueue_many(queue, mark, jobs)
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(index: int) -> None:
        run_dir = tmp / f"chaos-{index}"
        run_dir.mkdir(exist_ok=True)
        settings = WorkerSettings(
            redis_url=url,
            queues=("default",),
            forking=index % 2 == 0,
            run_dir=str(run_dir),
            heartbeat_ttl_s=4,
            sweep_interval_s=1,
            safety_margin_s=1,
            log_level="INFO" if LOGS is not None else "WARNING",
        )
        name = f"chaos.{index}.{time.monotonic_ns()}"
        command = [
            sys.executable,
            "-m",
            "fleetkit.worker.process",
            settings.model_dump_json(),
            name,
        ]
        workers.append((spawn(command), run_dir))

    for index in range(processes):
        start(index)
    victims = list(range(processes))
    kills = victims[: round(processes * 0.3)]
    notices = victims[len(kills) : len(kills) + round(processes * 0.3)]
    time.sleep(3)
    for step, index in enumerate(kills + notices):
        process, run_dir = workers[index]
        if index in kills:
            kill_group(process)
        else:
            notice = {"kind": "spot-interruption", "deadline": time.time() + 0.5}
            (run_dir / "notice.json").write_text(json.dumps(notice))
            os.kill(process.pid, signal.SIGUSR1)
        start(processes + step)
        time.sleep(0.5)
    began = time.monotonic()
    # Lost means never completed: wait well past the heartbeat TTL and rq's maintenance.
    while time.monotonic() - began < 300 and redis.scard(DONE_KEY) < jobs:
        time.sleep(0.5)
    for process, _ in workers:
        if process.poll() is None:
            kill_group(process)
    done = {d.decode() for d in redis.smembers(DONE_KEY)}
    for job_id in FailedJobRegistry(queue=queue).get_job_ids():
        failed = Job.fetch(job_id, connection=redis)
        result = failed.latest_result()
        reason = result.exc_string if result else failed.exc_info
        print(
            f"failed {job_id}: {reason!r} meta={failed.meta} worker={failed.worker_name!r} "
            f"started_at={failed.started_at} enqueued_at={failed.enqueued_at}",
            file=sys.stderr,
        )
    print("killed:", [workers[i][0].args[-1] for i in kills], file=sys.stderr)
    print("noticed:", [workers[i][0].args[-1] for i in notices], file=sys.stderr)
    return {
        "jobs": jobs,
        "completed": len(done & set(ids)),
        "failed": len(FailedJobRegistry(queue=queue)),
        "lost": len(set(ids) - done),
        "runs": int(redis.get("bench:runs") or 0),
        "hard_killed_processes": len(kills),
        "noticed_processes": len(notices),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="alternated throughput rounds")
    parser.add_argument("--latency-rounds", type=int, default=3, help="alternated latency rounds")
    parser.add_argument("--latency-jobs", type=int, default=1000)
    parser.add_argument("--chaos-jobs", type=int, default=10_000)
    parser.add_argument("--chaos-processes", type=int, default=8)
    parser.add_argument("--chaos-only", action="store_true")
    parser.add_argument("--logs", type=Path, help="keep each worker process's output here")
    args = parser.parse_args()
    global LOGS
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        LOGS = args.logs
    tmp = Path(tempfile.mkdtemp(prefix="fleetkit-bench-"))
    server = RedisServer(tmp).start()
    url = server.url
    rows = []
    try:
        for mode in () if args.chaos_only else ("forking", "simple"):
            # Alternated rounds, each round's order swapped, median of each: run-to-run drift
            # on a shared machine (CPU steal by other guests) is larger than the difference
            # being measured.
            steal = StealMeter()
            rates: dict[str, list[float]] = {"rq": [], "fleetkit": []}
            for index in range(args.rounds):
                for kind in ("rq", "fleetkit") if index % 2 == 0 else ("fleetkit", "rq"):
                    rates[kind].append(throughput(kind, mode, url, tmp, args.jobs))
            rounded = {kind: [round(rate) for rate in values] for kind, values in rates.items()}
            print(f"{mode} jobs/s per round: {json.dumps(rounded)}", file=sys.stderr)
            rq_rate = statistics.median(rates["rq"])
            our_rate = statistics.median(rates["fleetkit"])
            # Latency in alternated rounds too, every sample pooled: one round's p99 is its
            # tenth-worst job, which moves by a millisecond from run to run on two cores.
            latencies: dict[str, list[float]] = {"rq": [], "fleetkit": []}
            round_p99: dict[str, list[float]] = {"rq": [], "fleetkit": []}
            for _ in range(args.latency_rounds):
                for kind in latencies:
                    sample = pickup(kind, mode, url, tmp, args.latency_jobs)
                    latencies[kind] += sample
                    round_p99[kind].append(round(percentile(sample, 99), 2))
            print(f"{mode} pickup p99 ms per round: {json.dumps(round_p99)}", file=sys.stderr)
            print(f"{mode}: CPU stolen by other guests {steal.percent():.1f} %", file=sys.stderr)
            rows.append((mode, rq_rate, our_rate, latencies["rq"], latencies["fleetkit"]))
        result = chaos(url, tmp, args.chaos_jobs, args.chaos_processes)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "| mode | plain rq jobs/s | fleetkit jobs/s | ratio | rq pickup p50/p95/p99 ms "
        "| fleetkit pickup p50/p95/p99 ms |"
    )
    print("|---|---|---|---|---|---|")
    for mode, rq_rate, our_rate, rq_lat, our_lat in rows:

        def fmt(values: list[float]) -> str:
            return " / ".join(f"{percentile(values, p):.1f}" for p in (50, 95, 99))

        print(
            f"| {mode} | {rq_rate:.0f} | {our_rate:.0f} | {our_rate / rq_rate:.2f} | "
            f"{fmt(rq_lat)} | {fmt(our_lat)} |"
        )
    print()
    print("chaos:", json.dumps(result))
    for mode, *_, our_lat in rows:
        print(f"fleetkit {mode} mean pickup: {statistics.mean(our_lat):.2f} ms")


if __name__ == "__main__":
    main()
