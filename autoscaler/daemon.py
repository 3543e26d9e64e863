"""The daemon: each tick reads every pool's queues and groups, decides with the policy, applies.

Read → decide → apply, behind the seams: `QueueDepthSource` and `CapacityProvider` are the only
I/O, the policy is pure. Only the leader applies and recovers; `--dry-run` decides and logs and
changes nothing (it does not even take the lock). Anything unreadable keeps capacity as it is,
and is said once when the outage begins and once when it ends (`core.waiting.Outage`), not on
every tick; the per-tick decision line says `keep` meanwhile.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from redis import Redis

from fleetkit.autoscaler.errors import CapacityUnavailable, NotLeader, SourceUnavailable
from fleetkit.autoscaler.leader import LeaderLock
from fleetkit.autoscaler.metrics import AutoscalerMetrics
from fleetkit.autoscaler.model import (
    Decision,
    Memory,
    PoolGroups,
    PoolLimits,
    PoolState,
    QueueReading,
)
from fleetkit.autoscaler.records import decision_dict, memory_from_record, record_json
from fleetkit.autoscaler.recovery import Recovery
from fleetkit.autoscaler.seams import CapacityProvider, QueueDepthSource, ScalingPolicy
from fleetkit.core.environment import Environment
from fleetkit.core.handback import MAX_HARD_KILLS
from fleetkit.core.liveness import HEARTBEAT_TTL_S
from fleetkit.core.redis_io import redis_errors
from fleetkit.core.schema import KEYS
from fleetkit.core.settings import PoolSettings
from fleetkit.core.waiting import Outage

__all__ = ["AWS", "REDIS", "Autoscaler", "TickReport", "pool_limits"]

log = logging.getLogger(__name__)
decisions_log = logging.getLogger("autoscaler.decision")

# The two services a tick depends on, as its outage lines name them.
REDIS = "Redis"
AWS = "AWS"


def pool_limits(pool: PoolSettings) -> PoolLimits:
    scaling = pool.scaling
    return PoolLimits(
        min_size=pool.min_size,
        max_size=pool.max_size,
        processes_per_instance=pool.processes_per_instance,
        target_drain_s=scaling.target_drain_s,
        default_job_duration_s=scaling.default_job_duration_s,
        stabilization_window_s=scaling.stabilization_window_s,
        fallback_grace_s=scaling.fallback_grace_s,
    )


@dataclass
class TickReport:
    """What one tick did, for callers and tests."""

    leader: bool
    decisions: list[Decision] = field(default_factory=list)
    applied: dict[str, bool] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    recovered: int = 0
    unreadable: set[str] = field(default_factory=set)  # REDIS, AWS: what failed this tick


class Autoscaler:
    def __init__(
        self,
        env: Environment,
        *,
        connection: Redis,
        source: QueueDepthSource,
        provider: CapacityProvider,
        policy: ScalingPolicy,
        lock: LeaderLock | None,
        metrics: AutoscalerMetrics,
        dry_run: bool = False,
        clock: Callable[[], float] = time.time,
        interval_s: float | None = None,
        heartbeat_ttl_s: float = HEARTBEAT_TTL_S,
    ) -> None:
        """`heartbeat_ttl_s` must be the workers' own (tests shorten both)."""
        self.env = env
        self.connection = connection
        self.source = source
        self.provider = provider
        self.policy = policy
        self.lock = lock
        self.metrics = metrics
        self.dry_run = dry_run
        self.clock = clock
        settings = env.autoscaler
        # The workers' own TTL and limit (not settable per environment): the sweep must agree.
        self.recovery = Recovery(
            connection, provider, heartbeat_ttl_s=heartbeat_ttl_s, max_hard_kills=MAX_HARD_KILLS
        )
        self.interval_s = interval_s or settings.interval_s
        self.outages = {REDIS: Outage(REDIS, log), AWS: Outage(AWS, log)}
        self.memory: dict[str, Memory] = {}
        self._memory_loaded = False
        self._last_tick_at: float | None = None
        self._stop = threading.Event()

    # --- the loop ------------------------------------------------------------------------------

    def run(self, interval_s: float, *, once: bool = False) -> None:
        """Tick every `interval_s` until `stop()` (SIGTERM): the current tick always completes."""
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                self.tick()
                if once:
                    return
                self._stop.wait(max(0.0, interval_s - (time.monotonic() - began)))
        finally:
            if self.lock is not None and not self.dry_run:
                self.lock.release()

    def stop(self) -> None:
        self._stop.set()

    # --- one tick ------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        began = time.monotonic()
        now = self.clock()
        report = TickReport(leader=False)
        leader = report.leader = self._lead(report)
        if not leader:
            if not report.errors:
                log.info("standby: another daemon holds the leader lock")
            self._finish(began, report, aws_tried=False)
            return report
        reading = self._read_queues(report)
        groups = self._read_groups(report)
        self.metrics.observe_sources(redis=reading is not None, aws=groups is not None)
        if self._last_tick_at is not None and now - self._last_tick_at > self._stale_after_s:
            # Ticks stopped for a while (a stall, a long outage): what was watched is not the
            # recent past any more, so the stabilization window starts over.
            log.warning(
                "%.0fs since the last tick: starting the windows over", now - self._last_tick_at
            )
            self.memory.clear()
        self._last_tick_at = now
        if reading is not None and not self._memory_loaded:
            self._load_memory(now, report)
        records: dict[str, str] = {}
        if groups is not None:
            self.recovery.observe(groups, now)
        if self._memory_loaded:  # never overwrite what a previous leader stored unread
            members = self.recovery.members_json(now)
            if members is not None:
                records[KEYS.members(self.env.name)] = members
        for name, pool in self.env.pools.items():
            state = PoolState(
                pool=name,
                now=now,
                limits=pool_limits(pool),
                load=None if reading is None else reading.loads.get(name),
                groups=None if groups is None else groups.get(name),
                busy_instances=frozenset() if reading is None else reading.busy_instances,
                hold=None if reading is None else reading.holds.get(name),
            )
            decision = self.policy.decide(state, self.memory.get(name, Memory()))
            self.memory[name] = decision.memory
            applied, error = self._apply(decision, state.groups, report)
            report.decisions.append(decision)
            report.applied[name] = applied
            self._log(decision, applied, error)
            self.metrics.observe_pool(decision, state.load, state.groups)
            records[KEYS.decision(self.env.name, name)] = record_json(
                decision, at=now, load=state.load, groups=state.groups, applied=applied, error=error
            )
        if not self.dry_run:
            still_leader = self._write_records(records, report)
            if reading is not None and still_leader:
                report.recovered = self._recover(reading, groups, now, report)
        self._finish(began, report, aws_tried=True)
        return report

    def _lead(self, report: TickReport) -> bool:
        if self.dry_run or self.lock is None:
            self.metrics.is_leader = self.lock is None
            return True
        try:
            leader = self.lock.acquire()
        except SourceUnavailable as exc:
            # Without Redis nobody can be sure to lead: act on nothing, keep capacity.
            self._failed(REDIS, exc, report)
            self.metrics.observe_sources(redis=False)
            leader = False
        if not leader:
            # A later leadership starts from the stored memory and group members.
            self.memory.clear()
            self.recovery.forget_members()
            self._memory_loaded = False
        self.metrics.is_leader = leader
        self.metrics.leader.set(1 if leader else 0)
        return leader

    def _read_queues(self, report: TickReport) -> QueueReading | None:
        pools = {name: pool.queues for name, pool in self.env.pools.items()}
        try:
            reading = self.source.read(pools)
        except SourceUnavailable as exc:
            self._failed(REDIS, exc, report)
            return None
        return reading

    def _read_groups(self, report: TickReport) -> Mapping[str, PoolGroups] | None:
        try:
            return self.provider.read()
        except CapacityUnavailable as exc:
            self._failed(AWS, exc, report)
            return None

    def _apply(
        self, decision: Decision, groups: PoolGroups | None, report: TickReport
    ) -> tuple[bool, str | None]:
        if not decision.changes or groups is None or self.dry_run:
            return False, None
        try:
            for capacity, desired in decision.desired.items():
                self._fence()
                self.provider.set_desired(groups.group(capacity), desired)
                self.metrics.desired_changes.labels(decision.pool, capacity.value).inc()
            for capacity, instance_id in decision.terminate:
                self._fence()
                self.provider.terminate(instance_id)
                self.metrics.terminations.labels(decision.pool, capacity.value).inc()
        except (CapacityUnavailable, NotLeader, SourceUnavailable) as exc:
            report.errors.append(str(exc))
            self.metrics.last_error = str(exc)
            self.metrics.errors.labels(
                "aws" if isinstance(exc, CapacityUnavailable) else "redis"
            ).inc()
            log.error("pool %s: could not apply %s: %s", decision.pool, decision.action, exc)
            return False, str(exc)
        return True, None

    def _fence(self) -> None:
        # Before every change: a call can wait out backoff long enough for the lock to lapse.
        if self.lock is not None:
            self.lock.check()

    def _log(self, decision: Decision, applied: bool, error: str | None) -> None:
        line = decision_dict(decision)
        line.update(env=self.env.name, applied=applied, dry_run=self.dry_run)
        if error:
            line["error"] = error
        decisions_log.info(json.dumps(line, separators=(",", ":"), ensure_ascii=False))

    @property
    def _stale_after_s(self) -> float:
        return 3 * self.interval_s + (self.lock.ttl_ms / 1000 if self.lock is not None else 0)

    def _write_records(self, records: dict[str, str], report: TickReport) -> bool:
        """Store the decisions (fenced); False when this daemon turned out not to lead."""
        try:
            if self.lock is not None:
                self.lock.fenced(records)
            else:
                with redis_errors("cannot write to Redis", error=SourceUnavailable):
                    self.connection.mset(records)
        except NotLeader as exc:
            report.errors.append(f"decision records not written: {exc}")
            return False
        except SourceUnavailable as exc:
            self._failed(REDIS, exc, report, then="decision records not written")
        return True

    def _load_memory(self, now: float, report: TickReport) -> None:
        """A new leader continues the previous leader's windows rather than starting empty,
        as long as that leader ticked recently (an old record proves nothing about now), and
        knows the instances it saw in the groups (one MGET for both)."""
        names = list(self.env.pools)
        keys = [KEYS.decision(self.env.name, n) for n in names] + [KEYS.members(self.env.name)]
        try:
            with redis_errors(
                "cannot read the stored decisions from Redis", error=SourceUnavailable
            ):
                *raws, members = self.connection.mget(keys)
        except SourceUnavailable as exc:
            self._failed(REDIS, exc, report, then="the windows are loaded on a later tick")
            return
        for name, raw in zip(names, raws, strict=True):
            memory = memory_from_record(raw, now=now, max_age_s=self._stale_after_s)
            if memory is not None and name not in self.memory:
                self.memory[name] = memory
        self.recovery.load_members(members)
        self._memory_loaded = True

    # --- recovery ------------------------------------------------------------------------------

    def _recover(
        self,
        reading: QueueReading,
        groups: Mapping[str, PoolGroups] | None,
        now: float,
        report: TickReport,
    ) -> int:
        """The workers' dead-worker sweep, and the jobs of instances that left their groups."""
        recovered = 0
        try:
            recovered += self.recovery.sweep(now)
            if groups is not None:
                recovered += self.recovery.recover_gone(reading, groups, now)
        except (SourceUnavailable, CapacityUnavailable) as exc:
            source = REDIS if isinstance(exc, SourceUnavailable) else AWS
            self._failed(source, exc, report, then="recovery postponed")
        if recovered:
            self.metrics.recovered.inc(recovered)
        return recovered

    # --- outages -------------------------------------------------------------------------------

    def _failed(
        self, source: str, exc: Exception, report: TickReport, *, then: str = "keeping capacity"
    ) -> None:
        """`source` could not be read or written this tick; `then` says what follows from it.

        One warning when an outage begins (`Outage`), none on the ticks that follow it.
        """
        error = str(exc) if then == "keeping capacity" else f"{then}: {exc}"
        report.errors.append(error)
        self.metrics.last_error = error
        if source not in report.unreadable:
            report.unreadable.add(source)
            self.outages[source].failed(f"{exc} ({then})")
        if source == REDIS:
            self.recovery.redis_lost(self.clock())

    def _finish(self, began: float, report: TickReport, *, aws_tried: bool) -> None:
        # Every tick reaches for Redis (the lock, or the queues); AWS only a leader's tick.
        for source in (REDIS, AWS) if aws_tried else (REDIS,):
            if source not in report.unreadable:
                self.outages[source].recovered()
        self.metrics.ticks.inc()
        self.metrics.tick_seconds.observe(time.monotonic() - began)
        self.metrics.last_tick = time.time()
