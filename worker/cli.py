"""`fleet-worker run`: the per-instance supervisor of interruption-safe rq workers.

Thin: parse the flags, compose the settings (`WorkerSettings.for_pool`), run the supervisor.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from fleetkit.core.aws import AwsClients, resolve_redis_url
from fleetkit.core.cli import OneLineErrors, configure_logging
from fleetkit.core.environment import REDIS_URL_VARIABLE, load_environment
from fleetkit.worker.settings import DEFAULT_POOL, DRAIN_MARGIN_S, WorkerSettings

__all__ = ["main"]

log = logging.getLogger("fleetkit.worker")

_DEFAULTS = WorkerSettings.model_fields


def _default(field: str) -> str:
    return str(_DEFAULTS[field].default)


@click.group(cls=OneLineErrors, name="fleet-worker")
@click.version_option(package_name="fleetkit")
def main() -> None:
    """fleetkit worker: rq workers that survive spot interruptions and hard kills."""


@main.command()
@click.option("--env", "env_ref", metavar="ENV", help="Environment name or .toml path.")
@click.option("--pool", help="Pool of the environment.", show_default=DEFAULT_POOL)
@click.option(
    "--redis-url",
    help=f"Overrides the environment and ${REDIS_URL_VARIABLE}.",
    show_default=f"the environment's, else ${REDIS_URL_VARIABLE}",
)
@click.option(
    "--queues",
    help="Comma-separated queue names, in priority order.",
    show_default="the pool's queues",
)
@click.option(
    "--processes",
    type=int,
    help="Worker processes on this instance.",
    show_default=f"the pool's processes_per_instance, else {_default('processes')}",
)
@click.option(
    "--imds-endpoint",
    help="Instance metadata address.",
    show_default="$AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254",
)
@click.option(
    "--metrics-port",
    type=int,
    help="Serve /healthz and /metrics on this port.",
    show_default="none: not served",
)
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
    help="Keep a work horse forked ahead of the next job (forking mode).",
    show_default="on",
)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    type=float,
    help="Seconds to finish jobs on SIGTERM.",
    show_default=(
        f"the pool's drain_timeout_s - {DRAIN_MARGIN_S}, else {_default('drain_timeout_s')}"
    ),
)
@click.option(
    "--poll-interval",
    "poll_interval_s",
    type=float,
    help="Seconds between IMDS polls.",
    show_default=_default("poll_interval_s"),
)
@click.option(
    "--stop-on-rebalance",
    is_flag=True,
    default=None,
    help="Treat a rebalance recommendation like an interruption notice.",
)
@click.option(
    "--run-dir",
    help="Directory for the supervisor's notice file.",
    show_default="a new temporary directory",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level (rq logs three lines per job at INFO).",
    show_default=_default("log_level"),
)
def run(
    env_ref: str | None,
    pool: str | None,
    redis_url: str | None,
    queues: str | None,
    simple: bool,
    **flags: Any,
) -> None:
    """Run the worker processes until drained (SIGTERM) or the instance is reclaimed."""
    from fleetkit.worker.runner import run_supervisor  # imports rq and boto3 only when running

    if flags.get("log_level"):
        flags["log_level"] = flags["log_level"].upper()
    if queues:
        flags["queues"] = tuple(q.strip() for q in queues.split(",") if q.strip())
    if simple:
        flags["forking"] = False
    # Before anything can wait (the SSM read, Redis): a service's lines go to its log.
    configure_logging(flags.get("log_level") or _default("log_level"))
    env = load_environment(env_ref) if env_ref else None
    if not redis_url and env is not None:
        clients = AwsClients.for_environment(env, say=log.warning)
        redis_url = resolve_redis_url(env, clients)
    settings = WorkerSettings.for_pool(
        env, pool, redis_url=redis_url or os.environ.get(REDIS_URL_VARIABLE), **flags
    )
    raise SystemExit(run_supervisor(settings))
