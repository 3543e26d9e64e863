"""`autoscaler status`: per pool, live queue figures and groups beside the last decision.

The groups are read first, and alone: an environment with no worker group tagged with its name
is not deployed (core's `NotDeployed`, exit 3), said before Redis is looked for (its URL may be
an SSM parameter that does not exist yet either).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from redis import Redis

from fleetkit.autoscaler.errors import CapacityUnavailable, SourceUnavailable
from fleetkit.autoscaler.model import PoolGroups, QueueLoad
from fleetkit.autoscaler.records import group_dict, load_dict
from fleetkit.autoscaler.seams import CapacityProvider, QueueDepthSource
from fleetkit.core.environment import Environment
from fleetkit.core.errors import NotDeployed
from fleetkit.core.redis_io import redis_errors, text
from fleetkit.core.schema import KEYS
from fleetkit.core.tags import TAG_ENV, TAG_POOL

__all__ = ["fleet_status", "read_groups"]

_RATES = ("arrival_rate", "completion_rate", "mean_duration_s")


def read_groups(
    env: Environment, provider: CapacityProvider
) -> tuple[Mapping[str, PoolGroups] | None, str | None]:
    """The environment's groups by pool, or None and why AWS could not be read.

    Raises NotDeployed when AWS answers and lists no worker group tagged with the environment.
    """
    try:
        groups = provider.read()
    except CapacityUnavailable as exc:
        return None, str(exc)
    if not groups:
        raise NotDeployed(
            f"environment {env.name}: not deployed (no worker groups tagged {TAG_ENV}={env.name})"
        )
    return groups, None


def fleet_status(
    env: Environment,
    *,
    connection: Redis,
    source: QueueDepthSource,
    groups: Mapping[str, PoolGroups] | None,
    groups_error: str | None = None,
) -> dict[str, Any]:
    """Everything `status` shows, as plain JSON-able values; unreadable parts say why.

    `groups` and `groups_error` are what `read_groups` returned. Raises SourceUnavailable when
    the queues cannot be read: without Redis there is nothing to show but the groups, which
    `infra status` shows.
    """
    errors: list[str] = [] if groups_error is None else [groups_error]
    reading = source.read({name: pool.queues for name, pool in env.pools.items()})
    if groups is not None:
        # Deployed, but not this pool (added to the file since): it is not sized until it is.
        errors += [
            f"pool {name}: not deployed (no worker groups tagged {TAG_POOL}={name})"
            for name in env.pools
            if name not in groups
        ]
    records: list[Any] = [None] * len(env.pools)
    leader = None
    try:
        with redis_errors("cannot read the decision records from Redis", error=SourceUnavailable):
            keys = [KEYS.decision(env.name, n) for n in env.pools]
            records = connection.mget(keys)
            raw_leader = connection.get(KEYS.leader(env.name))
        leader = text(raw_leader) if raw_leader is not None else None
    except SourceUnavailable as exc:
        errors.append(str(exc))
    now = time.time()
    pools: dict[str, Any] = {}
    for (name, settings), raw in zip(env.pools.items(), records, strict=True):
        record = json.loads(raw) if raw else None
        hold = reading.holds.get(name)
        pool_groups = groups.get(name) if groups is not None else None
        decision = record["decision"] if record else None
        pools[name] = {
            "queues": list(settings.queues),
            "load": _load(reading.loads.get(name), record),
            "needed_processes": decision["needed_processes"] if decision else None,
            "target": decision["target"] if decision else None,
            "desired": None
            if pool_groups is None
            else pool_groups.spot.desired + pool_groups.on_demand.desired,
            "groups": None
            if pool_groups is None
            else {
                g.capacity.value: group_dict(g) for g in (pool_groups.spot, pool_groups.on_demand)
            },
            "hold": None
            if hold is None or not hold.active(now)
            else {"count": hold.count, "until": hold.until},
            "last_decision": None
            if record is None
            else {
                "at": record["at"],
                "age_s": round(now - record["at"], 1),
                "action": decision["action"] if decision else None,
                "reason": decision["reason"] if decision else None,
                "applied": record.get("applied"),
                "error": record.get("error"),
            },
        }
    return {"env": env.name, "deployed": True, "leader": leader, "pools": pools, "errors": errors}


def _load(live: QueueLoad | None, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Queued and in flight as read now; the rates and mean duration as of the last decision.

    One read has no rates (they need a window of reads), but the leader measures them every
    tick and stores them with its decision.
    """
    load = load_dict(live)
    stored = record.get("load") if record else None
    if load is None or not isinstance(stored, dict):
        return load
    for key in _RATES:
        if stored.get(key) is not None:
            load[key] = stored[key]
    return load
