"""`autoscaler`: run the daemon, burst a pool by hand, end a hold, show the fleet.

Thin: parse, build the edges (Redis, AWS), call the library, render. Every environment comes
from `--env` or `FLEETKIT_ENV`; Redis from the environment file, overridden by FLEETKIT_REDIS_URL.

Redis out of reach: `run` waits for it at start-up, at most `start_timeout_s()` (one "waiting
for Redis" line), then gives up with one error line; once started, it keeps capacity through an
outage however long. `run --once`, `status`, `scale` and `release` do not wait: one error line
and exit 1 within their 3 s socket timeouts.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import signal
import socket
import sys
from datetime import UTC, datetime
from functools import cached_property
from types import FrameType
from typing import Any

import click
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from redis import Redis
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetkit.autoscaler import manual
from fleetkit.autoscaler.asg import AsgCapacityProvider
from fleetkit.autoscaler.daemon import Autoscaler
from fleetkit.autoscaler.errors import AutoscalerError
from fleetkit.autoscaler.holds import DEFAULT_HOLD_S, HoldStore, parse_duration
from fleetkit.autoscaler.leader import LeaderLock
from fleetkit.autoscaler.manual import validate_scale
from fleetkit.autoscaler.metrics import AutoscalerMetrics
from fleetkit.autoscaler.policy import QueueDrainPolicy
from fleetkit.autoscaler.rq_source import RqQueueDepthSource
from fleetkit.autoscaler.status import fleet_status, read_groups
from fleetkit.core.aws import AwsClients, resolve_redis_url
from fleetkit.core.cli import OneLineErrors, configure_logging, stderr
from fleetkit.core.environment import REDIS_URL_VARIABLE, Environment, load_environment
from fleetkit.core.errors import ConfigError, NotDeployed, UsageError
from fleetkit.core.health_server import HealthServer
from fleetkit.core.redis_io import fail_fast_client, wait_for_redis
from fleetkit.core.waiting import wait_until_reachable

__all__ = ["main"]

# No markup: pool, queue and group names and AWS messages are printed as they are.
console = Console(highlight=False, markup=False, soft_wrap=True)  # a line stays one line
log = logging.getLogger("autoscaler")


env_option = click.option(
    "--env",
    "env_ref",
    envvar="FLEETKIT_ENV",
    required=True,
    metavar="ENV",
    help="Environment name or .toml path (default: $FLEETKIT_ENV).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


class _Edges:
    """The environment with its Redis and AWS clients, built once per command, each when first
    used (`status` reads the groups before it looks for Redis)."""

    def __init__(self, env_ref: str, *, service: bool = False) -> None:
        """`service`: `run`, whose waiting lines go to its log rather than to stderr."""
        self.env: Environment = load_environment(env_ref)
        self.clients = AwsClients.for_environment(self.env, say=log.warning if service else None)

    @cached_property
    def redis_url(self) -> str:
        return resolve_redis_url(self.env, self.clients)

    @cached_property
    def redis(self) -> Redis:
        try:
            # Fail fast instead of hanging a tick: the daemon keeps capacity and tries next tick.
            return fail_fast_client(self.redis_url, timeout_s=3, retries=1)
        except ValueError as exc:
            # The file's url is checked when it is read; the variable and the SSM value are not.
            # Not repeated: a URL may hold a password.
            whence = (
                REDIS_URL_VARIABLE
                if os.environ.get(REDIS_URL_VARIABLE)
                else f"SSM parameter {self.env.redis.ssm_parameter}"
            )
            raise ConfigError(f"{whence}: not a Redis URL: {exc}") from None

    def source(self) -> RqQueueDepthSource:
        env = self.env
        return RqQueueDepthSource(
            self.redis,
            rate_window_s={name: pool.scaling.rate_window_s for name, pool in env.pools.items()},
            env=env.name,
        )

    def provider(self) -> AsgCapacityProvider:
        # Retries are the provider's own (jittered, bounded); botocore's on top would multiply
        # them into minutes of one stalled tick.
        single = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5)
        session = self.clients.session
        return AsgCapacityProvider(
            session.client("autoscaling", config=single),
            self.env.name,
            ec2=session.client("ec2", config=single),
        )


@click.group(cls=OneLineErrors, name="autoscaler")
@click.version_option(package_name="fleetkit")
def main() -> None:
    """fleetkit autoscaler: sizes each pool's spot and on-demand groups from its queues."""


@main.command()
@env_option
@click.option("--once", is_flag=True, help="Run one tick and exit (1 if it hit errors).")
@click.option("--dry-run", is_flag=True, help="Decide and log, change nothing.")
@click.option("--interval", type=click.FloatRange(min=0.1), help="Seconds between ticks.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="/healthz and /metrics port.")
def run(
    env_ref: str, once: bool, dry_run: bool, interval: float | None, metrics_port: int | None
) -> None:
    """Tick every INTERVAL: read queues and groups, decide, apply."""
    configure_logging()
    edges = _Edges(env_ref, service=True)
    provider = edges.provider()
    if not once:
        # The service's start: Redis and AWS must answer within `start_timeout_s()`, or it does
        # not start (a wrong address ends in an error line, not in a daemon that never acts).
        wait_for_redis(edges.redis, edges.redis_url, say=log.warning, console=stderr)
        _wait_for_aws(provider)
    settings = edges.env.autoscaler
    interval_s = interval or settings.interval_s
    metrics = AutoscalerMetrics(interval_s)
    lock = LeaderLock(edges.redis, edges.env.name, ttl_s=max(settings.leader_ttl_s, 3 * interval_s))
    daemon = Autoscaler(
        edges.env,
        connection=edges.redis,
        source=edges.source(),
        provider=provider,
        policy=QueueDrainPolicy(),
        lock=lock,
        metrics=metrics,
        dry_run=dry_run,
        interval_s=interval_s,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current tick", signum)
        daemon.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = settings.metrics_port if metrics_port is None else metrics_port
    server = None
    if not once and port is not None:
        server = HealthServer(settings.metrics_host, port, metrics.health, metrics.registry)
        server.start()
        log.info("health and metrics on port %d", server.port)
    log.info(
        "autoscaler for %s: %d pool(s), every %gs%s",
        edges.env.name,
        len(edges.env.pools),
        interval_s,
        " (dry run)" if dry_run else "",
    )
    try:
        if once:
            report = daemon.tick()
            if lock.token is not None and not dry_run:
                lock.release()
            if report.errors:  # each as an error line, after the tick's own log
                raise AutoscalerError("\n".join(dict.fromkeys(report.errors)))
            return
        daemon.run(interval_s)
    finally:
        if server is not None:
            server.stop()


def _wait_for_aws(provider: AsgCapacityProvider) -> None:
    """Until Auto Scaling answers; at once when it refuses (no wait mends a missing permission)."""
    wait_until_reachable(
        "AWS",
        provider.read,
        say=log.warning,
        console=stderr,
        retryable=lambda exc: isinstance(exc.__cause__, BotoCoreError),
    )


def _parse_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"N {text!r}: not a whole number") from None


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("pool")
@click.argument("count", metavar="N")
@env_option
@click.option(
    "--hold",
    "hold_text",
    default=f"{DEFAULT_HOLD_S // 60}m",
    show_default=True,
    help="Keep at least N this long (0: no hold).",
)
@json_option
def scale(pool: str, count: str, env_ref: str, hold_text: str, as_json: bool) -> None:
    """Set POOL to N instances now (spot first), held at N or more for --hold."""
    n = _parse_count(count)
    hold_s = parse_duration(hold_text)
    env = load_environment(env_ref)
    validate_scale(env, pool, n)  # before any connection: bad input changes nothing
    edges = _Edges(env_ref)
    source = edges.source()
    by = f"{getpass.getuser()}@{socket.gethostname()}"
    result = scale_pool(edges, pool, n, hold_s, source, by)
    if as_json:
        click.echo(json.dumps(result))
        return
    for line in result["changes"] or ["no change to the groups"]:
        console.print(f"{pool}: {line}")
    if result["busy_left"]:
        console.print(
            f"{pool}: {result['busy_left']} busy or launching instance(s) above {n} stay until idle"
        )
    hold = result["hold"]
    if hold:
        until = datetime.fromtimestamp(hold["until"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        console.print(f"{pool}: held at ≥ {n} until {until} (autoscaler release {pool} ends it)")
    else:
        console.print(f"{pool}: no hold; the daemon sizes it from the queue again")


def scale_pool(
    edges: _Edges, pool: str, n: int, hold_s: float, source: RqQueueDepthSource, by: str
) -> dict[str, Any]:
    env = edges.env

    def busy() -> frozenset[str]:
        return source.read({p: s.queues for p, s in env.pools.items()}).busy_instances

    result = manual.scale(
        env,
        pool,
        n,
        hold_s=hold_s,
        provider=edges.provider(),
        holds=HoldStore(edges.redis, env.name),
        busy=busy,
        by=by,
    )
    return {
        "pool": pool,
        "count": n,
        "desired": {c.value: v for c, v in result.plan.desired.items()},
        "terminated": [i for _, i in result.plan.terminate],
        "busy_left": result.plan.busy_left,
        "changes": result.applied,
        "hold": None
        if result.hold is None
        else {"count": result.hold.count, "until": result.hold.until},
    }


@main.command(name="release")
@click.argument("pool")
@env_option
@json_option
def release_command(pool: str, env_ref: str, as_json: bool) -> None:
    """End POOL's hold: the daemon sizes it from the queue again."""
    env = load_environment(env_ref)
    if pool not in env.pools:
        validate_scale(env, pool, 0)  # raises the one-line UsageError
    edges = _Edges(env_ref)
    ended = manual.release(edges.env, pool, HoldStore(edges.redis, edges.env.name))
    if as_json:
        click.echo(json.dumps({"pool": pool, "released": ended}))
    else:
        console.print(f"{pool}: hold released" if ended else f"{pool}: no hold to release")


@main.command()
@env_option
@json_option
def status(env_ref: str, as_json: bool) -> None:
    """Per pool: queue figures, needed vs desired, groups, hold, last decision.

    Exit 3 when the environment is not deployed, 1 when something could not be read."""
    edges = _Edges(env_ref)
    try:
        groups, groups_error = read_groups(edges.env, edges.provider())
    except NotDeployed as exc:
        if not as_json:
            raise  # the one error line
        report = {"env": edges.env.name, "deployed": False, "pools": {}, "errors": [str(exc)]}
        click.echo(json.dumps(report))
        sys.exit(exc.exit_code)
    digest = fleet_status(
        edges.env,
        connection=edges.redis,
        source=edges.source(),
        groups=groups,
        groups_error=groups_error,
    )
    if as_json:
        click.echo(json.dumps(digest))
    else:
        _render_status(digest)
    if digest["errors"]:
        sys.exit(1)


def _render_status(digest: dict[str, Any]) -> None:
    console.print(f"environment {digest['env']}; leader: {digest['leader'] or 'none'}")
    for name, pool in digest["pools"].items():
        title = f"pool {name} ({', '.join(pool['queues'])})"
        if pool["groups"] is None:  # why is among the warnings
            console.print(f"{title}\n  groups: ?")
        else:
            table = Table(title=title, title_justify="left")
            for column in ("group", "desired", "in service", "pending", "min", "max"):
                table.add_column(column)
            for capacity, group in pool["groups"].items():
                table.add_row(
                    capacity,
                    str(group["desired"]),
                    str(group["in_service"]),
                    str(group["pending"]),
                    str(group["min"]),
                    str(group["max"]),
                )
            console.print(table)
        load = pool["load"]
        if load:
            console.print(
                f"  queued {load['queued']}, in flight {load['in_flight']}; "
                f"arrivals {_per_s(load['arrival_rate'])}, "
                f"completions {_per_s(load['completion_rate'])}, "
                f"mean job {_seconds(load['mean_duration_s'])}"
            )
        needed = pool["needed_processes"]
        console.print(
            f"  needed: {'?' if needed is None else f'{needed:g} processes'} → "
            f"{pool['target'] if pool['target'] is not None else '?'} instances; "
            f"desired {pool['desired'] if pool['desired'] is not None else '?'}"
        )
        hold = pool["hold"]
        if hold:
            until = (
                "released"
                if hold["until"] is None
                else datetime.fromtimestamp(hold["until"], UTC).strftime("%H:%M:%S UTC")
            )
            console.print(f"  hold: ≥ {hold['count']} until {until}")
        last = pool["last_decision"]
        if last:
            console.print(
                f"  last decision ({last['age_s']:g}s ago): {last['action']}: {last['reason']}"
            )
        else:
            console.print("  last decision: none yet (is `autoscaler run` running?)")
    for error in digest["errors"]:
        stderr.print(Text.assemble(("warning:", "yellow"), " ", error))


def _per_s(rate: float | None) -> str:
    return "?" if rate is None else f"{rate:.3g}/s"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}s"
