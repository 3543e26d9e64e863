"""The daemon's Prometheus metrics and `/healthz` digest (one process: a plain registry)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from fleetkit.autoscaler.model import Decision, PoolGroups, QueueLoad
from fleetkit.core.metrics import NAMESPACE

__all__ = ["AutoscalerMetrics"]

_SUBSYSTEM = "autoscaler"


class AutoscalerMetrics:
    """Counters and gauges the daemon updates each tick, plus what `/healthz` reports."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.registry = CollectorRegistry()
        by_pool = ["pool"]
        by_group = ["pool", "capacity"]
        common: dict[str, Any] = {
            "namespace": NAMESPACE,
            "subsystem": _SUBSYSTEM,
            "registry": self.registry,
        }
        self.ticks = Counter("ticks", "Ticks run", **common)
        self.tick_seconds = Histogram(
            "tick_seconds",
            "Time per tick, AWS calls included",
            buckets=(0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            **common,
        )
        self.decisions = Counter(
            "decisions", "Decisions by pool and action", ["pool", "action"], **common
        )
        self.terminations = Counter("terminations", "Idle instances removed", by_group, **common)
        self.desired_changes = Counter(
            "desired_changes", "SetDesiredCapacity calls", by_group, **common
        )
        self.errors = Counter("errors", "Failed reads or writes by source", ["source"], **common)
        self.recovered = Counter(
            "recovered_jobs", "Jobs of dead workers or gone instances requeued", **common
        )
        self.data_available = Gauge(
            "data_available", "1 when the source could be read last tick", ["source"], **common
        )
        self.leader = Gauge("leader", "1 while this daemon holds the leader lock", **common)
        self.desired = Gauge("desired_capacity", "Desired capacity", by_group, **common)
        self.in_service = Gauge("in_service", "Instances in service", by_group, **common)
        self.pending = Gauge("pending", "Instances launching", by_group, **common)
        self.target = Gauge("target_instances", "Instances the policy wants", by_pool, **common)
        self.needed = Gauge(
            "needed_processes", "Worker processes the policy wants", by_pool, **common
        )
        self.queued = Gauge("queued_jobs", "Jobs waiting", by_pool, **common)
        self.in_flight = Gauge("in_flight_jobs", "Jobs running", by_pool, **common)
        self.last_tick = 0.0
        self.sources_ok = {"redis": True, "aws": True}  # until a tick says otherwise
        self.is_leader = False
        self.last_error: str | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def observe_sources(self, *, redis: bool | None = None, aws: bool | None = None) -> None:
        """Record which sources could be read this tick (None: not tried, unchanged)."""
        for source, ok in (("redis", redis), ("aws", aws)):
            if ok is None:
                continue
            self.sources_ok[source] = ok
            self.data_available.labels(source).set(1 if ok else 0)
            if not ok:
                self.errors.labels(source).inc()

    def observe_pool(
        self, decision: Decision, load: QueueLoad | None, groups: PoolGroups | None
    ) -> None:
        pool = decision.pool
        child = self._child
        child(self.decisions, pool, decision.action.value).inc()
        if decision.target is not None:
            child(self.target, pool).set(decision.target)
        if decision.needed_processes is not None:
            child(self.needed, pool).set(decision.needed_processes)
        if load is not None:
            child(self.queued, pool).set(load.queued)
            child(self.in_flight, pool).set(load.in_flight)
        if groups is not None:
            for group in (groups.spot, groups.on_demand):
                capacity = group.capacity.value
                child(self.desired, pool, capacity).set(group.desired)
                child(self.in_service, pool, capacity).set(group.in_service)
                child(self.pending, pool, capacity).set(group.pending)

    def _child(self, metric: Any, *labels: str) -> Any:
        # prometheus_client's labels() takes a lock and builds a key on every call; a tick
        # sets a dozen series per pool, every tick.
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> dict[str, Any]:
        """Healthy while ticks keep coming and both Redis and AWS could be read."""
        age = time.time() - self.last_tick if self.last_tick else None
        stale = age is None or age > 3 * self.interval_s + 30
        reasons = [f"{s} unreadable" for s, ok in self.sources_ok.items() if not ok]
        if stale:
            reasons.append("no tick yet" if age is None else f"last tick {age:.0f}s ago")
        return {
            "healthy": not reasons,
            "reasons": reasons,
            "leader": self.is_leader,
            "last_tick_age_s": None if age is None else round(age, 1),
            "sources": self.sources_ok,
            "last_error": self.last_error,
        }
