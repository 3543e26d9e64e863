"""Recovery, run by the leader after each tick: the in-flight jobs of workers that are gone go
back to the front of their queues.

Two ways a worker is known to be gone:

- **its heartbeat expired** (the workers' own sweep, `fleetkit.core.liveness.Liveness.sweep`). Right
  after Redis restarts every heartbeat looks stale until the workers reconnect, so the sweep
  runs only once the Redis server has been up for a heartbeat TTL (`INFO server`, read only on
  a tick that found dead-worker candidates) and this daemon has not failed to reach Redis
  within a TTL;
- **its instance left one of our groups and is terminated**: requeued at once, without waiting
  for the heartbeat. Only instances seen in the groups can leave them; that list is stored in
  Redis with the decision records (the same fenced write), so a new leader or a restarted
  daemon still knows the instances the previous one saw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from redis import Redis

from fleetkit.autoscaler.errors import SourceUnavailable
from fleetkit.autoscaler.model import PoolGroups, QueueReading
from fleetkit.autoscaler.seams import CapacityProvider
from fleetkit.core.liveness import Liveness
from fleetkit.core.redis_io import redis_errors

__all__ = ["Recovery"]

log = logging.getLogger(__name__)

# An instance that left its group but still runs (detached) is asked about again after this.
_STILL_RUNNING_RECHECK_S = 300.0
# An instance not seen in a group for this long is forgotten: the heartbeat sweep had it.
_MEMBER_MEMORY_S = 3600.0
# Stored sightings are refreshed at least this often even when the instances did not change.
_MEMBERS_REWRITE_S = 60.0


class Recovery:
    """The dead-worker sweep and the jobs of instances that left their groups."""

    def __init__(
        self,
        connection: Redis,
        provider: CapacityProvider,
        *,
        heartbeat_ttl_s: float,
        max_hard_kills: int,
    ) -> None:
        self.connection = connection
        self.provider = provider
        self.liveness = Liveness(connection, ttl_s=heartbeat_ttl_s)
        self.max_hard_kills = max_hard_kills
        # Instances seen in this environment's groups → when last seen (the daemon's clock).
        self.members: dict[str, float] = {}
        self._still_running: dict[str, float] = {}
        self._redis_lost_at: float | None = None
        # What the last fenced write stored: the list is rewritten only when it changed.
        self._stored: frozenset[str] | None = None
        self._stored_at = 0.0

    # --- what the daemon tells it --------------------------------------------------------------

    def redis_lost(self, now: float) -> None:
        """This daemon could not reach Redis: workers could not beat either."""
        self._redis_lost_at = now

    def observe(self, groups: Mapping[str, PoolGroups], now: float) -> None:
        """Remember the instances in the groups now, and forget those long gone."""
        for pool_groups in groups.values():
            for instance in pool_groups.instance_ids:
                self.members[instance] = now
        for instance, seen in list(self.members.items()):
            if now - seen > _MEMBER_MEMORY_S:
                del self.members[instance]

    def members_json(self, now: float) -> str | None:
        """The instances seen in the groups, for the fenced write of the tick's records; None
        when what is stored still holds (same instances, sightings under a minute old).

        Rewriting a few hundred instances every tick cost more than the rest of the tick's
        write; a sighting a minute stale only delays forgetting an instance by that minute.
        """
        ids = frozenset(self.members)
        if ids == self._stored and now - self._stored_at < _MEMBERS_REWRITE_S:
            return None
        self._stored, self._stored_at = ids, now
        return json.dumps(self.members, separators=(",", ":"), sort_keys=True)

    def load_members(self, raw: bytes | str | None) -> None:
        """Add the instances a previous leader stored (the newer sighting wins)."""
        if raw is None:
            return
        try:
            stored = json.loads(raw)
            loaded = {str(i): float(seen) for i, seen in stored.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring the stored group members: %s", exc)
            return
        for instance, seen in loaded.items():
            self.members[instance] = max(seen, self.members.get(instance, seen))

    def forget_members(self) -> None:
        """Leadership lost: the next leadership starts from what Redis holds."""
        self.members.clear()
        self._still_running.clear()
        self._stored = None

    # --- the recovery --------------------------------------------------------------------------

    def sweep(self, now: float) -> int:
        """Jobs of workers whose heartbeat expired put back, unless Redis just came back.
        Raises SourceUnavailable."""
        with redis_errors("cannot sweep dead workers in Redis", error=SourceUnavailable):
            return self._sweep(now)

    def _sweep(self, now: float) -> int:
        ttl = self.liveness.ttl_s
        if self._redis_lost_at is not None and now - self._redis_lost_at < ttl:
            return 0  # Redis was out a moment ago: heartbeats are stale until workers beat again
        dead = self.liveness.dead_workers()
        if not dead:
            return 0
        uptime = self._server_uptime_s()
        if uptime is None or uptime < ttl:
            log.info(
                "Redis up for %ss, less than the heartbeat TTL (%gs): not sweeping yet",
                "?" if uptime is None else uptime,
                ttl,
            )
            return 0
        recovered = self.liveness.sweep(max_hard_kills=self.max_hard_kills, dead=dead)
        return len(recovered)

    def _server_uptime_s(self) -> float | None:
        info = self.connection.info("server")
        uptime = info.get("uptime_in_seconds")
        return float(uptime) if isinstance(uptime, int | float | str) else None

    def recover_gone(
        self, reading: QueueReading, groups: Mapping[str, PoolGroups], now: float
    ) -> int:
        """Jobs of workers whose instance left its group and is terminated put back.
        Raises SourceUnavailable or CapacityUnavailable."""
        in_groups = frozenset().union(*(g.instance_ids for g in groups.values()))
        # Only instances seen in our groups can leave them: a worker on an instance we never
        # managed (another account, a laptop) is left to the heartbeat sweep.
        outside = [
            i
            for i in reading.workers_by_instance
            if i in self.members
            and i not in in_groups
            and now - self._still_running.get(i, -1e18) >= _STILL_RUNNING_RECHECK_S
        ]
        if not outside:
            return 0
        gone = self.provider.gone(outside)
        for instance in outside:
            if instance not in gone:
                self._still_running[instance] = now  # detached but running: its workers go on
        recovered = 0
        for instance in sorted(gone):
            for worker in reading.workers_by_instance[instance]:
                with redis_errors(
                    f"cannot requeue the jobs of worker {worker} in Redis", error=SourceUnavailable
                ):
                    found = self.liveness.recover(
                        worker,
                        reason=f"instance {instance} left its group and is terminated",
                        max_hard_kills=self.max_hard_kills,
                    )
                recovered += found is not None
            self.members.pop(instance, None)
        return recovered
