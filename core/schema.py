"""The Redis schema, declared once: every key fleetkit reads or writes, and rq's keys it touches.

"Your application's usage of Redis does have a schema: formalize it." The worker and the
autoscaler share no code but this: the workers write heartbeats, in-flight records and
counters; the autoscaler reads them to size pools and recover jobs. A key spelled in two
places goes blind the day one side changes, so every key is built here, from one prefix.

- Global keys (`fleetkit:<name>`) are shared by every environment on one Redis: workers do not
  know which environment they belong to.
- Per-environment keys (`fleetkit:<env>:…`) are the autoscaler's: holds, the leader lock, the
  decision records.
- rq's keys (`rq:…`) are rq's: listed (`RQ_KEYS`) so an audit can tell ours from theirs, built
  with rq's own helpers, never spelled here.

`docs/architecture.md` shows the tables `python -m fleetkit.core.schema` prints
(`python -m fleetkit.core.schema docs/architecture.md` rewrites them there).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["KEYS", "HealthKeys", "KeySpec", "RedisSchema", "rq_keys"]

PREFIX = "fleetkit"


@dataclass(frozen=True)
class KeySpec:
    """One key (or family of keys): `template` holds `{placeholders}` for its variable parts."""

    template: str
    type: str
    written_by: str
    read_by: str
    ttl: str
    owner: str = "fleetkit"  # or "rq"

    def pattern(self) -> re.Pattern[str]:
        """A regular expression matching every key of this family (a placeholder is one segment
        between colons: pool, queue and worker names hold none)."""
        parts = re.split(r"(\{[a-z_]+\})", self.template)
        return re.compile(
            "".join("[^:]+" if p.startswith("{") else re.escape(p) for p in parts if p) + "$"
        )


@dataclass(frozen=True)
class HealthKeys:
    """One worker's health records (`fleetkit.worker.health`)."""

    jobs: str
    failures: str
    consecutive: str
    state: str

    def all(self) -> tuple[str, str, str, str]:
        return self.jobs, self.failures, self.consecutive, self.state


class RedisSchema:
    """Every key fleetkit reads or writes, built from one prefix (tests use their own)."""

    def __init__(self, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        # worker → the Redis server's time of its last heartbeat
        self.heartbeats = f"{prefix}:heartbeats"
        # worker → the job it runs (set with rq's execution, cleared when the job ends)
        self.inflight = f"{prefix}:inflight"
        # worker → the EC2 instance it runs on
        self.instances = f"{prefix}:instances"
        # `<queue>:done` / `<queue>:seconds`: jobs ended per queue and their seconds
        self.queue_stats = f"{prefix}:queue-stats"
        # `<function>:sum` / `<function>:count`: observed durations per job function
        self.durations = f"{prefix}:durations"

    # --- per worker ----------------------------------------------------------------------------

    def metrics(self, worker: str) -> str:
        """One worker's counters and histogram buckets."""
        return f"{self.prefix}:metrics:{worker}"

    def health(self, worker: str) -> HealthKeys:
        base = f"{self.prefix}:health:{worker}"
        return HealthKeys(
            f"{base}:jobs", f"{base}:failures", f"{base}:consecutive", f"{base}:state"
        )

    # --- per environment (the autoscaler's) ----------------------------------------------------

    def hold(self, env: str, pool: str) -> str:
        """A manual floor set by `autoscaler scale`, expiring with the hold."""
        return f"{self.prefix}:{env}:hold:{pool}"

    def leader(self, env: str) -> str:
        return f"{self.prefix}:{env}:autoscaler:leader"

    def leader_epoch(self, env: str) -> str:
        """The fencing token's counter: only ever grows."""
        return f"{self.leader(env)}:epoch"

    def decision(self, env: str, pool: str) -> str:
        """A pool's last decision, with the policy's memory, for `status` and a new leader."""
        return f"{self.prefix}:{env}:autoscaler:pool:{pool}"

    def members(self, env: str) -> str:
        """The instances the leader has seen in the environment's groups (→ when), as JSON."""
        return f"{self.prefix}:{env}:autoscaler:members"

    # --- the declaration -----------------------------------------------------------------------

    def specs(self) -> tuple[KeySpec, ...]:
        """Every key of ours, as documented (`docs/architecture.md`)."""
        health = self.health("{worker}")
        health_ttl = "two health windows (10 min)"
        return (
            KeySpec(
                self.heartbeats,
                "zset",
                "worker beacon",
                "sweeps (workers, autoscaler)",
                "none; clean exits remove their member",
            ),
            KeySpec(
                self.inflight,
                "hash",
                "worker (job start, end, hand back)",
                "autoscaler (busy), sweeps",
                "none; cleared at job end",
            ),
            KeySpec(
                self.instances,
                "hash",
                "worker beacon",
                "autoscaler (busy instances, recovery)",
                "none; clean exits remove their field",
            ),
            KeySpec(
                self.queue_stats,
                "hash",
                "worker (job end)",
                "autoscaler (rates, mean duration)",
                "none",
            ),
            KeySpec(
                self.durations,
                "hash",
                "worker (job end)",
                "worker (can a job finish before a notice's deadline?)",
                "none",
            ),
            KeySpec(self.metrics("{worker}"), "hash", "worker", "supervisor `/metrics`", "1 day"),
            KeySpec(health.jobs, "zset", "worker (job end)", "supervisor `/healthz`", health_ttl),
            KeySpec(
                health.failures, "zset", "worker (job failed)", "supervisor `/healthz`", health_ttl
            ),
            KeySpec(
                health.consecutive,
                "string",
                "worker (job end)",
                "supervisor `/healthz`",
                health_ttl,
            ),
            KeySpec(
                health.state,
                "hash",
                "worker (rebalance notice)",
                "supervisor `/healthz`",
                health_ttl,
            ),
            KeySpec(
                self.hold("{env}", "{pool}"),
                "string (JSON)",
                "`autoscaler scale`, `release`",
                "autoscaler daemon, `status`",
                "the hold's duration",
            ),
            KeySpec(
                self.leader("{env}"),
                "string",
                "autoscaler daemon",
                "autoscaler daemons, `status`",
                "`leader_ttl_s`",
            ),
            KeySpec(
                self.leader_epoch("{env}"),
                "string (counter)",
                "autoscaler daemon",
                "autoscaler daemon",
                "none",
            ),
            KeySpec(
                self.decision("{env}", "{pool}"),
                "string (JSON)",
                "autoscaler leader (fenced)",
                "`status`, the next leader",
                "none",
            ),
            KeySpec(
                self.members("{env}"),
                "string (JSON)",
                "autoscaler leader (fenced)",
                "the next leader",
                "none",
            ),
        )

    def all_specs(self) -> tuple[KeySpec, ...]:
        """Ours, then rq's."""
        return self.specs() + rq_keys()

    def declared(self, key: str) -> KeySpec | None:
        """The declaration a key belongs to, or None for a key nobody declared."""
        return next((s for s in self.all_specs() if s.pattern().match(key)), None)


@cache
def rq_keys() -> tuple[KeySpec, ...]:
    """The rq keys fleetkit's workers and autoscaler touch, built with rq's own helpers."""
    from redis import Redis
    from rq import registry
    from rq.executions import Execution, ExecutionRegistry
    from rq.group import Group
    from rq.job import Job
    from rq.queue import Queue
    from rq.results import Result
    from rq.scheduler import SCHEDULER_LOCKING_KEY_TEMPLATE
    from rq.suspension import WORKERS_SUSPENDED
    from rq.worker import Worker
    from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

    # No command is sent: rq builds some keys only on instances, and a client connects lazily.
    unconnected = Redis()
    queue = Queue("{queue}", connection=unconnected)
    execution = Execution("{execution}", "{job}", connection=unconnected)
    # rq validates job ids: a stand-in id, then the placeholder in its place.
    dependencies = Job("JOB", connection=unconnected).dependencies_key.replace("JOB", "{job}")

    def rq(template: str, kind: str, written: str, read: str) -> KeySpec:
        return KeySpec(template, kind, written, read, "rq's", owner="rq")

    registries = (
        (registry.StartedJobRegistry, "rq; fleetkit hand backs remove", "autoscaler (in flight)"),
        (registry.FinishedJobRegistry, "rq", "rq"),
        (registry.FailedJobRegistry, "rq; fleetkit (too many hard kills)", "rq"),
        (registry.DeferredJobRegistry, "rq", "rq"),
        (registry.ScheduledJobRegistry, "rq", "rq"),
        (registry.CanceledJobRegistry, "rq", "rq"),
    )
    return (
        rq(queue.key, "list", "rq; fleetkit hand backs (to the front)", "rq; autoscaler (queued)"),
        rq(
            queue.intermediate_queue_key,
            "list",
            "rq (dequeued, not started)",
            "rq; fleetkit hand backs",
        ),
        rq(Queue.redis_queues_keys, "set", "rq", "rq"),
        rq(queue.registry_cleaning_key, "string", "rq (maintenance lock)", "rq"),
        *(rq(r.key_template.format("{queue}"), "zset", w, rd) for r, w, rd in registries),
        rq(Job.key_for("{job}"), "hash", "rq; fleetkit hand backs (status, meta)", "rq; fleetkit"),
        rq(Job.dependents_key_for("{job}"), "set", "rq", "rq"),
        # rq 2.12 spells this one `rq:job::<id>:dependencies` (two colons); it is rq's name.
        rq(dependencies, "set", "rq", "rq"),
        rq(Result.get_key("{job}"), "stream", "rq; fleetkit (failed after hard kills)", "rq"),
        rq(ExecutionRegistry.key_template.format("{job}"), "zset", "rq", "rq; fleetkit hand backs"),
        rq(execution.key, "hash", "rq", "rq"),
        rq(
            Worker.redis_worker_namespace_prefix + "{worker}", "hash", "rq", "rq; autoscaler (busy)"
        ),
        rq(REDIS_WORKER_KEYS, "set", "rq", "rq"),
        rq(WORKERS_BY_QUEUE_KEY % "{queue}", "set", "rq", "rq"),
        rq(SCHEDULER_LOCKING_KEY_TEMPLATE % "{queue}", "string", "rq (scheduler lock)", "rq"),
        rq(WORKERS_SUSPENDED, "string", "`rq suspend`", "rq"),
        rq(Group.REDIS_GROUP_KEY, "set", "rq", "rq (maintenance)"),
    )


KEYS = RedisSchema()


def markdown_table(specs: Iterable[KeySpec]) -> str:
    """The schema as the table in `docs/architecture.md`."""
    rows = ["| key | type | written by | read by | TTL |", "|---|---|---|---|---|"]
    rows += [
        f"| `{s.template}` | {s.type} | {s.written_by} | {s.read_by} | {s.ttl} |" for s in specs
    ]
    return "\n".join(rows) + "\n"


def update_document(text: str) -> str:
    """`text` with the tables between `<!-- schema: fleetkit|rq -->` and `<!-- /schema -->`
    replaced by the declared ones."""
    tables = {"fleetkit": markdown_table(KEYS.specs()), "rq": markdown_table(rq_keys())}

    def declared(match: re.Match[str]) -> str:
        return match.group(1) + tables[match.group(2)] + match.group(3)

    block = r"(<!-- schema: (fleetkit|rq) -->\n).*?(<!-- /schema -->)"
    return re.sub(block, declared, text, flags=re.S)


if __name__ == "__main__":  # pragma: no cover - `python -m fleetkit.core.schema [FILE.md]`
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        path.write_text(update_document(path.read_text()))
    else:
        sys.stdout.write(markdown_table(KEYS.specs()) + "\n" + markdown_table(rq_keys()))
