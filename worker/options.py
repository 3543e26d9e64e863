"""`FleetOptions`: what a fleet worker needs beyond rq's own arguments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["FleetOptions"]


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """A worker process's fleet settings, taken from `WorkerSettings` by `worker.process`.

    A plain dataclass, not the pydantic model: the forking worker's process stays free of
    pydantic (every job forks from it).
    """

    redis_url: str
    run_dir: Path  # where the supervisor writes `notice.json`
    safety_margin_s: float  # a job must be expected to end this long before the deadline
    drain_timeout_s: float  # how long SIGTERM lets a running job finish
    stop_on_rebalance: bool  # a rebalance recommendation drains like an interruption
    heartbeat_ttl_s: float  # a worker whose heartbeat is older is dead
    sweep_interval_s: float  # seconds between this worker's sweeps for dead workers
    max_hard_kills: int  # a job whose worker died this often goes to the failed registry
    handback_grace_s: float  # between asking a horse to stop and killing it
    beat_interval_s: float = 1.0
    instance_id: str | None = None  # the EC2 instance, for the autoscaler's map
    prefork: bool = True  # forking mode: keep the next job's horse forked ahead
