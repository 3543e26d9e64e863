"""`fleet-worker run`: the per-instance supervisor of interruption-safe rq workers."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
from pydantic import ValidationError

from fleetkit.infra.aws import AwsClients, resolve_redis_url
from fleetkit.infra.environment import REDIS_URL_VARIABLE, load_environment
from fleetkit.infra.errors import InfraError
from fleetkit.worker.settings import WorkerSettings

__all__ = ["main", "resolve_settings"]


def resolve_settings(
    *,
    env_ref: str | None,
    pool: str | None,
    overrides: dict[str, Any],
) -> WorkerSettings:
    """Flags override the environment file's pool, which overrides the defaults."""
    values: dict[str, Any] = {}
    if env_ref:
        env = load_environment(env_ref)
        name = pool or "workers"
        if name not in env.pools:
            raise click.UsageError(
                f"--pool {name!r}: not in {env.source} (pools: {', '.join(sorted(env.pools))})"
            )
        settings = env.pools[name]
        values.update(
            queues=tuple(settings.queues),
            processes=settings.processes_per_instance,
            # Leave time to complete the lifecycle action inside the hook's timeout.
            drain_timeout_s=max(settings.drain_timeout_s - 30, 0),
        )
        if not overrides.get("redis_url"):
            values["redis_url"] = resolve_redis_url(env, AwsClients.for_environment(env))
    elif not overrides.get("redis_url"):
        values["redis_url"] = os.environ.get(REDIS_URL_VARIABLE)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not values.get("redis_url"):
        raise click.UsageError(f"no Redis: pass --redis-url, --env, or set {REDIS_URL_VARIABLE}")
    if not values.get("queues"):
        raise click.UsageError("no queues: pass --queues a,b or --env")
    try:
        return WorkerSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"])
        raise click.UsageError(f"{key}: {first['msg']} (got {first.get('input')!r})") from None


@click.group()
@click.version_option(package_name="fleetkit")
def main() -> None:
    """fleetkit worker: rq workers that survive spot interruptions and hard kills."""


@main.command()
@click.option("--env", "env_ref", metavar="ENV", help="Environment name or .toml path.")
@click.option("--pool", help="Pool of the environment (default: workers).")
@click.option("--redis-url", help=f"Overrides the environment and ${REDIS_URL_VARIABLE}.")
@click.option("--queues", help="Comma-separated queue names, in priority order.")
@click.option("--processes", type=int, help="Worker processes on this instance.")
@click.option(
    "--imds-endpoint", help="Instance metadata address (AWS_EC2_METADATA_SERVICE_ENDPOINT)."
)
@click.option("--metrics-port", type=int, help="Serve /healthz and /metrics on this port.")
@click.option("--burst", is_flag=True, default=None, help="Exit when the queues are empty.")
@click.option(
    "--simple",
    "simple",
    is_flag=True,
    default=False,
    help="Run jobs in the worker process (rq SimpleWorker) instead of forking per job.",
)
@click.option(
    "--prefork/--no-prefork",
    default=None,
    help="Keep a work horse forked ahead of the next job (forking mode; default on).",
)
@click.option(
    "--drain-timeout", "drain_timeout_s", type=float, help="Seconds to finish jobs on SIGTERM."
)
@click.option("--poll-interval", "poll_interval_s", type=float, help="Seconds between IMDS polls.")
@click.option(
    "--stop-on-rebalance",
    is_flag=True,
    default=None,
    help="Treat a rebalance recommendation like an interruption notice.",
)
@click.option("--run-dir", help="Directory for the supervisor's notice file.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Worker log level (default INFO: rq logs three lines per job).",
)
def run(
    env_ref: str | None,
    pool: str | None,
    queues: str | None,
    simple: bool,
    **flags: Any,
) -> None:
    """Run the worker processes until drained (SIGTERM) or the instance is reclaimed."""
    from fleetkit.worker.runner import run_supervisor  # imports rq and boto3 only when running

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides: dict[str, Any] = dict(flags)
    if overrides.get("log_level"):
        overrides["log_level"] = overrides["log_level"].upper()
    if queues:
        overrides["queues"] = tuple(q.strip() for q in queues.split(",") if q.strip())
    if simple:
        overrides["forking"] = False
    try:
        settings = resolve_settings(env_ref=env_ref, pool=pool, overrides=overrides)
    except InfraError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(run_supervisor(settings))
