"""Termination notices: what AWS tells an instance before it goes away, parsed without I/O.

Three sources feed one `TerminationNotice` type: the spot interruption notice (about two minutes
before the action), the rebalance recommendation (the instance is at elevated risk) and the Auto
Scaling target lifecycle state (`Terminated` when the group scales in or refreshes). The IMDS
adapter in `worker.imds` fetches the bodies; everything here is pure and table-tested.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from fleetkit.core.lifecycle import asg_lifecycle_states, is_terminating
from fleetkit.worker.errors import WorkerError

__all__ = [
    "FixedNoticeSource",
    "MalformedNotice",
    "NoticeKind",
    "TerminationNotice",
    "TerminationNoticeSource",
    "most_urgent",
    "parse_lifecycle_state",
    "parse_rebalance",
    "parse_spot_action",
]


class MalformedNotice(WorkerError, ValueError):
    """A metadata body that does not look like what AWS documents."""


class NoticeKind(StrEnum):
    SPOT_INTERRUPTION = "spot-interruption"
    REBALANCE = "rebalance"
    ASG_TERMINATION = "asg-termination"


# Equal deadlines are broken by kind: the spot notice carries the hardest deadline.
_KIND_RANK = {
    NoticeKind.SPOT_INTERRUPTION: 0,
    NoticeKind.ASG_TERMINATION: 1,
    NoticeKind.REBALANCE: 2,
}


@dataclass(frozen=True)
class TerminationNotice:
    """One notice that this instance is going away (or is at risk of it)."""

    kind: NoticeKind
    deadline: datetime | None  # UTC; None when AWS gives no time (lifecycle state, rebalance)
    action: str  # "terminate"/"stop"/"hibernate", the lifecycle state, or "rebalance"
    seen_at: datetime

    @property
    def imminent(self) -> bool:
        """True when the worker must stop; a rebalance recommendation only says "at risk"."""
        return self.kind is not NoticeKind.REBALANCE

    def to_json(self) -> dict[str, str | None]:
        """A JSON-ready dict with ISO-8601 timestamps."""
        return {
            "kind": self.kind.value,
            "deadline": None if self.deadline is None else self.deadline.isoformat(),
            "action": self.action,
            "seen_at": self.seen_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> TerminationNotice:
        """The inverse of `to_json`; raises MalformedNotice on anything else."""
        raw_kind = data.get("kind")
        if not isinstance(raw_kind, str) or raw_kind not in _KIND_RANK:
            raise MalformedNotice(f"unknown notice kind {raw_kind!r}")
        kind = NoticeKind(raw_kind)
        deadline = data.get("deadline")
        return cls(
            kind=kind,
            deadline=None if deadline is None else _timestamp(deadline, "deadline"),
            action=_non_empty_str(data.get("action"), "action"),
            seen_at=_timestamp(data.get("seen_at"), "seen_at"),
        )


@runtime_checkable
class TerminationNoticeSource(Protocol):
    """Where a worker learns that its instance is going away."""

    def poll(self) -> TerminationNotice | None:
        """The most urgent current notice, or None."""
        ...

    @property
    def enabled(self) -> bool:
        """False when there is nothing to watch (e.g. not on EC2): poll() always returns None."""
        ...


@dataclass
class FixedNoticeSource:
    """A test source: poll() returns whatever `.notice` holds."""

    notice: TerminationNotice | None = None
    enabled: bool = True
    polls: int = 0

    def poll(self) -> TerminationNotice | None:
        """The notice set on this source, or None when disabled."""
        self.polls += 1
        return self.notice if self.enabled else None


def parse_spot_action(body: str, now: datetime) -> TerminationNotice:
    """Parse `spot/instance-action`: `{"action": "terminate", "time": "2026-11-22T10:00:00Z"}`."""
    data = _json_object(body)
    return TerminationNotice(
        kind=NoticeKind.SPOT_INTERRUPTION,
        deadline=_timestamp(data.get("time"), "time"),
        action=_non_empty_str(data.get("action"), "action"),
        seen_at=_utc(now),
    )


def parse_rebalance(body: str, now: datetime) -> TerminationNotice:
    """Parse `events/recommendations/rebalance`: `{"noticeTime": "2026-11-22T10:00:00Z"}`."""
    data = _json_object(body)
    # noticeTime is when AWS issued the recommendation, not a deadline: nothing is scheduled.
    _timestamp(data.get("noticeTime"), "noticeTime")
    return TerminationNotice(
        kind=NoticeKind.REBALANCE, deadline=None, action="rebalance", seen_at=_utc(now)
    )


def parse_lifecycle_state(body: str, now: datetime) -> TerminationNotice | None:
    """Parse `autoscaling/target-lifecycle-state`: a notice when the instance is on its way to
    termination, None for any other state the Auto Scaling API has.

    The endpoint reports only the steady states (`Terminated`), but a state on its way to
    termination is a termination whatever the endpoint says.
    """
    state = body.strip()
    if state not in asg_lifecycle_states():
        # Warm pools grow states (Warmed:Hibernated came later), and none of them stops a
        # worker: one newer than the installed botocore is no notice, not a malformed body.
        if _is_warmed_state(state) and not is_terminating(state):
            return None
        raise MalformedNotice(f"unknown lifecycle state {body[:80]!r}")
    if not is_terminating(state):
        return None
    return TerminationNotice(
        kind=NoticeKind.ASG_TERMINATION, deadline=None, action=state, seen_at=_utc(now)
    )


def most_urgent(notices: Iterable[TerminationNotice]) -> TerminationNotice | None:
    """Imminent notices first, then the earliest deadline (none last), then the spot notice."""
    return min(notices, key=_urgency, default=None)


def _urgency(notice: TerminationNotice) -> tuple[bool, bool, datetime, int]:
    deadline = notice.deadline or datetime.max.replace(tzinfo=UTC)
    return (not notice.imminent, notice.deadline is None, deadline, _KIND_RANK[notice.kind])


def _is_warmed_state(state: str) -> bool:
    prefix, _, rest = state.partition(":")
    return prefix == "Warmed" and bool(rest) and rest.replace(":", "").isalpha()


def _json_object(body: str) -> dict[str, object]:
    try:
        data = json.loads(body)
    # Deeply nested junk makes json recurse too far; that is a bad body, not a crash.
    except (ValueError, RecursionError) as exc:
        raise MalformedNotice(f"not JSON: {body[:80]!r}") from exc
    if not isinstance(data, dict):
        raise MalformedNotice(f"expected a JSON object, got {type(data).__name__}")
    return data


def _non_empty_str(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedNotice(f"{field!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _timestamp(value: object, field: str) -> datetime:
    text = _non_empty_str(value, field)
    try:
        return _utc(datetime.fromisoformat(text))
    # Converting a timestamp near year 1 or 9999 to UTC can overflow.
    except (ValueError, OverflowError) as exc:
        raise MalformedNotice(f"{field!r} is not an ISO-8601 timestamp: {text[:80]!r}") from exc


def _utc(moment: datetime) -> datetime:
    # IMDS speaks UTC; a naive timestamp can only mean UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
