"""Worker settings: flags override the environment file's pool, which overrides these defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["HEARTBEAT_TTL_S", "MAX_HARD_KILLS", "WorkerSettings"]

# Shared with the autoscaler's sweep: a sweeper with a shorter TTL than the workers' would take
# live workers for dead ones.
HEARTBEAT_TTL_S = 10.0
MAX_HARD_KILLS = 3


class WorkerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str = Field(pattern=r"^(rediss?|unix)://")
    queues: tuple[str, ...] = Field(min_length=1)
    processes: int = Field(default=1, ge=1, le=256)
    forking: bool = True  # rq.Worker (fork per job) or rq.SimpleWorker (in process)
    # Forking mode: fork (and connect) the next job's horse while the current job runs, so a
    # dequeued job does not wait for fork + connect (worker/forking.py).
    prefork: bool = True
    imds_endpoint: str | None = None
    poll_interval_s: float = Field(default=2.0, gt=0, le=60)
    # Hand back a job unless it is expected to end this long before the instance does.
    safety_margin_s: float = Field(default=15.0, ge=0)
    drain_timeout_s: float = Field(default=600.0, ge=0)
    stop_on_rebalance: bool = False
    # A worker whose heartbeat is older than this is dead; its job is requeued.
    heartbeat_ttl_s: float = Field(default=HEARTBEAT_TTL_S, ge=2)
    sweep_interval_s: float = Field(default=3.0, gt=0)
    max_hard_kills: int = Field(default=MAX_HARD_KILLS, ge=1)
    # Grace between asking a horse to stop and killing it.
    handback_grace_s: float = Field(default=5.0, ge=0)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    burst: bool = False
    name_prefix: str = "fleet"
    # rq logs three lines per job at INFO; busy fleets may prefer WARNING.
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    # The EC2 instance the workers run on (from IMDS): lets the autoscaler map workers to
    # instances, to spare busy ones on scale-in and recover jobs of instances that left.
    instance_id: str | None = None
    run_dir: str | None = None
