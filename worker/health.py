"""Per-worker health over a sliding window, kept in Redis so the supervisor can judge its workers.

Each worker process records its jobs into two sorted sets scored by time (all jobs, failures),
trimmed to the window on every write, plus a consecutive-failure counter and a small state hash.
The supervisor reads every worker of the instance in one pipeline and serves the verdict on
`/healthz`. Timestamps are the instance's clock: writers and the reader share one machine.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from redis import Redis
from redis.client import Pipeline

from fleetkit.core.redis_io import text
from fleetkit.core.schema import KEYS, HealthKeys, RedisSchema

__all__ = ["HealthPolicy", "WorkerHealth", "instance_digest", "judge"]


_TRIM_PROBABILITY = 0.1


@dataclass(frozen=True)
class HealthPolicy:
    """When a worker stops being healthy."""

    window_s: float = 300
    # Unhealthy when failures / jobs in the window exceeds this (equal is still healthy).
    max_error_rate: float = 0.5
    # Below this many jobs in the window the rate is noise: it alone never makes a worker unhealthy.
    min_jobs_for_rate: int = 10
    # Unhealthy once this many jobs in a row have failed.
    max_consecutive_failures: int = 5

    @property
    def ttl_s(self) -> int:
        """Seconds a worker's keys outlive its last write: two windows, so a dead worker fades."""
        return max(1, math.ceil(2 * self.window_s))


def judge(
    jobs: int, failures: int, consecutive: int, policy: HealthPolicy
) -> tuple[bool, list[str]]:
    """Whether a worker with these counts is healthy, and why not."""
    reasons: list[str] = []
    if consecutive >= policy.max_consecutive_failures:
        reasons.append(
            f"{consecutive} consecutive failures (limit {policy.max_consecutive_failures})"
        )
    if jobs > 0 and jobs >= policy.min_jobs_for_rate:
        rate = failures / jobs
        if rate > policy.max_error_rate:
            reasons.append(
                f"error rate {rate:.0%} over {jobs} jobs in {policy.window_s:g}s "
                f"(limit {policy.max_error_rate:.0%})"
            )
    return not reasons, reasons


class WorkerHealth:
    """What one worker process records about its own jobs."""

    def __init__(
        self,
        redis: Redis,
        worker: str,
        policy: HealthPolicy = HealthPolicy(),
        keys: RedisSchema = KEYS,
    ) -> None:
        self.redis = redis
        self.worker = worker
        self.policy = policy
        self.keys = keys.health(worker)

    def record_job(self, ok: bool, now: float | None = None, pipe: Pipeline | None = None) -> None:
        """Record one finished job (ok) or failed job (not ok) at `now`; with `pipe`, the writes
        join the caller's pipeline instead of making a round trip of their own."""
        now = time.time() if now is None else now
        ttl = self.policy.ttl_s
        cutoff = now - self.policy.window_s
        # Unique members: two jobs ending in the same microsecond must count twice.
        member = f"{now}:{uuid4().hex[:8]}"
        k = self.keys
        writer = pipe if pipe is not None else self.redis.pipeline(transaction=False)
        writer.zadd(k.jobs, {member: now})
        writer.expire(k.jobs, ttl)
        if ok:
            writer.set(k.consecutive, 0, ex=ttl)
        else:
            writer.zadd(k.failures, {member: now})
            writer.incr(k.consecutive)
            for key in k.all():
                writer.expire(key, ttl)
        # Trimming old entries is bookkeeping, not correctness (ZCOUNT reads the window): doing
        # it on one job in ten keeps the sets bounded at a fraction of the cost. Random, not a
        # counter, because forked horses do not share state with their parent.
        if random.random() < _TRIM_PROBABILITY:
            for key in (k.jobs, k.failures):
                writer.zremrangebyscore(key, "-inf", cutoff)
        if pipe is None:
            writer.execute()
            writer.reset()

    def set_at_risk(self, reason: str, now: float | None = None) -> None:
        """Flag this worker as about to lose its instance (spot notice, rebalance, scale-in)."""
        now = time.time() if now is None else now
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.state, mapping={"at_risk": 1, "reason": reason, "since": now})
            pipe.expire(self.keys.state, self.policy.ttl_s)
            pipe.execute()

    def clear(self) -> None:
        """Forget this worker: a clean exit leaves nothing for the supervisor to judge."""
        self.redis.delete(*self.keys.all())

    def digest(self, now: float | None = None) -> dict[str, Any]:
        """This worker's counts over the window and the verdict on them."""
        with self.redis.pipeline(transaction=False) as pipe:
            _queue_reads(pipe, self.keys, self._cutoff(now))
            raw = pipe.execute()
        return _digest(self.worker, raw, self.policy)

    def _cutoff(self, now: float | None) -> float:
        return (time.time() if now is None else now) - self.policy.window_s


def instance_digest(
    redis: Redis,
    workers: list[str],
    policy: HealthPolicy = HealthPolicy(),
    keys: RedisSchema = KEYS,
    now: float | None = None,
) -> dict[str, Any]:
    """The instance's health: every worker healthy, and at least one worker running."""
    cutoff = (time.time() if now is None else now) - policy.window_s
    with redis.pipeline(transaction=False) as pipe:
        for worker in workers:
            _queue_reads(pipe, keys.health(worker), cutoff)
        raw = pipe.execute()
    digests = [
        _digest(worker, raw[i * _READS : (i + 1) * _READS], policy)
        for i, worker in enumerate(workers)
    ]
    reasons = [f"{d['worker']}: {r}" for d in digests for r in d["reasons"]]
    if not workers:
        reasons.append("no workers running")
    return {
        "healthy": bool(workers) and all(d["healthy"] for d in digests),
        "reasons": reasons,
        "workers": digests,
    }


_READS = 4  # commands queued per worker by _queue_reads


def _queue_reads(pipe: Pipeline, keys: HealthKeys, cutoff: float) -> None:
    # Exclusive lower bound: record_job trims scores <= cutoff, so both agree on the window.
    pipe.zcount(keys.jobs, f"({cutoff}", "+inf")
    pipe.zcount(keys.failures, f"({cutoff}", "+inf")
    pipe.get(keys.consecutive)
    pipe.hgetall(keys.state)


def _digest(worker: str, raw: list[Any], policy: HealthPolicy) -> dict[str, Any]:
    jobs, failures, consecutive_raw, state_raw = raw
    consecutive = int(consecutive_raw) if consecutive_raw is not None else 0
    state = {text(k): text(v) for k, v in (state_raw or {}).items()}
    healthy, reasons = judge(int(jobs), int(failures), consecutive, policy)
    return {
        "worker": worker,
        "jobs_in_window": int(jobs),
        "failures_in_window": int(failures),
        "error_rate": failures / jobs if jobs else 0.0,
        "consecutive_failures": consecutive,
        "at_risk": state.get("at_risk") == "1",
        "at_risk_reason": state.get("reason"),
        "healthy": healthy,
        "reasons": reasons,
    }
