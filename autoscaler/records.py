"""Decisions as JSON: the structured log line, the per-pool record `status` reads, and the memory
a new leader picks up so a failover does not restart the stabilization window from nothing.
"""

from __future__ import annotations

import json
from typing import Any

from fleetkit.autoscaler.model import Decision, GroupState, Memory, PoolGroups, QueueLoad

__all__ = ["decision_dict", "group_dict", "load_dict", "memory_from_record", "record_json"]


def load_dict(load: QueueLoad | None) -> dict[str, Any] | None:
    if load is None:
        return None
    return {
        "queued": load.queued,
        "in_flight": load.in_flight,
        "arrival_rate": load.arrival_rate,
        "completion_rate": load.completion_rate,
        "mean_duration_s": load.mean_duration_s,
    }


def group_dict(group: GroupState) -> dict[str, Any]:
    return {
        "name": group.name,
        "desired": group.desired,
        "in_service": group.in_service,
        "pending": group.pending,
        "min": group.min_size,
        "max": group.max_size,
        "capacity_failure": group.capacity_failure,
    }


def decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "pool": decision.pool,
        "action": decision.action.value,
        "reason": decision.reason,
        "needed_processes": (
            None if decision.needed_processes is None else round(decision.needed_processes, 3)
        ),
        "target": decision.target,
        "desired": {c.value: v for c, v in decision.desired.items()},
        "terminate": [i for _, i in decision.terminate],
    }


def record_json(
    decision: Decision,
    *,
    at: float,
    load: QueueLoad | None,
    groups: PoolGroups | None,
    applied: bool,
    error: str | None = None,
) -> str:
    record = {
        "at": at,
        "decision": decision_dict(decision),
        "applied": applied,
        "error": error,
        "load": load_dict(load),
        "groups": None
        if groups is None
        else {g.capacity.value: group_dict(g) for g in (groups.spot, groups.on_demand)},
        "memory": {
            "recommendations": [list(r) for r in decision.memory.recommendations],
            "spot_short_since": decision.memory.spot_short_since,
        },
    }
    return json.dumps(record, separators=(",", ":"))


def memory_from_record(raw: bytes | str | None, *, now: float, max_age_s: float) -> Memory | None:
    """The memory stored with a pool's last decision; None if absent, unreadable or older than
    `max_age_s`."""
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        if now - float(record["at"]) > max_age_s:
            return None
        memory = record["memory"]
        recommendations = tuple((float(t), int(n)) for t, n in memory["recommendations"])
        since = memory.get("spot_short_since")
        return Memory(recommendations, None if since is None else float(since))
    except (ValueError, KeyError, TypeError):
        return None
