"""Worker settings: flags override the environment file's pool, which overrides these defaults.

`WorkerSettings.for_pool` composes them from the one environment model, the same way for
`fleet-worker run`, the bootstrap and the sandbox.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleetkit.core.environment import REDIS_URL_VARIABLE, Environment
from fleetkit.core.errors import UsageError
from fleetkit.core.handback import MAX_HARD_KILLS
from fleetkit.core.liveness import HEARTBEAT_TTL_S

__all__ = ["DEFAULT_POOL", "DRAIN_MARGIN_S", "WorkerSettings"]

DEFAULT_POOL = "workers"
# The drain ends this long before the terminating hook's timeout, to leave time to complete it.
DRAIN_MARGIN_S = 30
# Flags named differently from their setting (the rest are `--<setting with dashes>`).
_FLAGS = {
    "drain_timeout_s": "--drain-timeout",
    "poll_interval_s": "--poll-interval",
    "forking": "--simple",
}


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

    @field_validator("imds_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().startswith(("http://", "https://")):
            raise ValueError(
                f"{value!r} is not an http(s) URL such as http://169.254.169.254 "
                "or http://127.0.0.1:8111"
            )
        return value

    @classmethod
    def for_pool(
        cls,
        env: Environment | None,
        pool: str | None = None,
        *,
        redis_url: str | None,
        **overrides: Any,
    ) -> WorkerSettings:
        """The settings of one pool's workers: `overrides` (flags; None means unset) over the
        environment's pool, over the defaults. `redis_url` is resolved by the caller (it may
        live in SSM). Raises UsageError naming the flag or value."""
        values: dict[str, Any] = {}
        if env is not None:
            name = pool or DEFAULT_POOL
            if name not in env.pools:
                known = ", ".join(sorted(env.pools))
                raise UsageError(
                    f"--pool {name!r}: not in {env.source or env.name} (pools: {known})"
                )
            settings = env.pools[name]
            values.update(
                queues=tuple(settings.queues),
                processes=settings.processes_per_instance,
                drain_timeout_s=max(settings.drain_timeout_s - DRAIN_MARGIN_S, 0),
            )
        elif pool is not None:
            raise UsageError("--pool needs --env: pools are defined in an environment file")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if redis_url:
            values["redis_url"] = redis_url
        if not values.get("redis_url"):
            raise UsageError(f"no Redis: pass --redis-url, --env, or set {REDIS_URL_VARIABLE}")
        if not values.get("queues"):
            raise UsageError("no queues: pass --queues a,b or --env")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            lines = [_flag_line(error) for error in exc.errors(include_url=False)]
            raise UsageError("\n".join(lines)) from None


def _flag_line(error: Any) -> str:
    """One problem as `--flag: what is wrong (got value)`."""
    field = ".".join(str(p) for p in error["loc"])
    flag = _FLAGS.get(field, f"--{field.replace('_', '-')}")
    message = str(error["msg"]).removeprefix("Value error, ")
    got = "" if error["type"] == "value_error" else f" (got {error.get('input')!r})"
    return f"{flag}: {message}{got}"
