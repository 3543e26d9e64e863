"""The pure core of termination notices: AWS bodies in, `TerminationNotice` out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkit.core.lifecycle import asg_lifecycle_states
from fleetkit.worker.notices import (
    FixedNoticeSource,
    MalformedNotice,
    NoticeKind,
    TerminationNotice,
    TerminationNoticeSource,
    most_urgent,
    parse_lifecycle_state,
    parse_rebalance,
    parse_spot_action,
)

NOW = datetime(2026, 11, 22, 9, 58, tzinfo=UTC)
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def notice(kind: NoticeKind, deadline: datetime | None = None) -> TerminationNotice:
    action = {"spot-interruption": "terminate", "rebalance": "rebalance"}.get(kind, "Terminated")
    return TerminationNotice(kind=kind, deadline=deadline, action=action, seen_at=NOW)


SPOT = notice(NoticeKind.SPOT_INTERRUPTION, AT)
LATER_SPOT = notice(NoticeKind.SPOT_INTERRUPTION, AT + timedelta(minutes=1))
ASG = notice(NoticeKind.ASG_TERMINATION)
REBALANCE = notice(NoticeKind.REBALANCE)


@pytest.mark.parametrize(
    ("body", "action", "deadline"),
    [
        ('{"action": "terminate", "time": "2026-11-22T10:00:00Z"}', "terminate", AT),
        ('{"action": "stop", "time": "2026-11-22T10:00:00Z"}', "stop", AT),
        ('{"action": "hibernate", "time": "2026-11-22T10:00:00Z"}', "hibernate", AT),
        ('{"action":"terminate","time":"2026-11-22T12:00:00+02:00"}', "terminate", AT),
        ('{"action": "terminate", "time": "2026-11-22T10:00:00"}', "terminate", AT),
        (' {"time": "2026-11-22T10:00:00.000Z", "action": "terminate"}\n', "terminate", AT),
    ],
    ids=["terminate", "stop", "hibernate", "offset-to-utc", "naive-is-utc", "padded-reordered"],
)
def test_parse_spot_action(body: str, action: str, deadline: datetime) -> None:
    parsed = parse_spot_action(body, NOW)
    assert parsed == TerminationNotice(NoticeKind.SPOT_INTERRUPTION, deadline, action, NOW)
    assert parsed.deadline is not None and parsed.deadline.tzinfo is UTC
    assert parsed.imminent


MALFORMED_SPOT = [
    ("", "empty"),
    ("terminate", "not-json"),
    ("<html>Service Unavailable</html>", "html"),
    ('{"action": "terminate", "time": "2026-11-22T10:00:00Z"', "truncated"),
    ("[]", "array"),
    ("null", "null"),
    ('"terminate"', "string"),
    ('{"action": "terminate"}', "missing-time"),
    ('{"time": "2026-11-22T10:00:00Z"}', "missing-action"),
    ('{"action": "terminate", "time": "soon"}', "bad-timestamp"),
    ('{"action": "terminate", "time": "2026-13-45T10:00:00Z"}', "impossible-date"),
    ('{"action": "terminate", "time": "0001-01-01T00:00:00+01:00"}', "overflows-utc"),
    ('{"action": "terminate", "time": 1795341600}', "epoch-number"),
    ('{"action": "terminate", "time": null}', "null-time"),
    ('{"action": 1, "time": "2026-11-22T10:00:00Z"}', "action-number"),
    ('{"action": "", "time": "2026-11-22T10:00:00Z"}', "action-empty"),
    ('{"action": ["terminate"], "time": "2026-11-22T10:00:00Z"}', "action-list"),
    ("[" * 100_000, "deeply-nested"),
]


@pytest.mark.parametrize("body", [b for b, _ in MALFORMED_SPOT], ids=[i for _, i in MALFORMED_SPOT])
def test_parse_spot_action_rejects_malformed(body: str) -> None:
    with pytest.raises(MalformedNotice):
        parse_spot_action(body, NOW)


def test_malformed_notice_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_spot_action("nope", NOW)


@pytest.mark.parametrize(
    "body",
    ['{"noticeTime": "2026-11-22T10:00:00Z"}', '{"noticeTime": "2026-11-22T10:00:00+00:00"}\n'],
    ids=["aws", "offset"],
)
def test_parse_rebalance(body: str) -> None:
    parsed = parse_rebalance(body, NOW)
    assert parsed == TerminationNotice(NoticeKind.REBALANCE, None, "rebalance", NOW)
    assert not parsed.imminent


@pytest.mark.parametrize(
    "body",
    ["", "{}", '{"noticeTime": "yesterday"}', '{"noticeTime": 5}', "[1]", "rebalance"],
    ids=["empty", "missing-time", "bad-timestamp", "number", "array", "not-json"],
)
def test_parse_rebalance_rejects_malformed(body: str) -> None:
    with pytest.raises(MalformedNotice):
        parse_rebalance(body, NOW)


@pytest.mark.parametrize(
    ("body", "action"),
    [
        ("Terminated", "Terminated"),
        ("Terminated\n", "Terminated"),
        ("Terminating:Wait", "Terminating:Wait"),
        ("Warmed:Terminated", "Warmed:Terminated"),
        # Missing from the hand-kept list this replaced: the notice was dropped as malformed.
        ("Terminating:Retained", "Terminating:Retained"),
        ("Warmed:Terminating:Retained", "Warmed:Terminating:Retained"),
    ],
    ids=[
        "terminated",
        "trailing-newline",
        "terminating-wait",
        "warm-pool-terminated",
        "terminating-retained",
        "warm-pool-terminating-retained",
    ],
)
def test_parse_lifecycle_state_termination(body: str, action: str) -> None:
    parsed = parse_lifecycle_state(body, NOW)
    assert parsed == TerminationNotice(NoticeKind.ASG_TERMINATION, None, action, NOW)
    assert parsed.imminent


@pytest.mark.parametrize(
    "body",
    [
        "InService",
        "InService\n",
        "Standby",
        "Detached",
        "Pending:Wait",
        "Warmed:Running",
        "Warmed:Stopped",
        "Warmed:Hibernated",
        "Warmed:SomethingNew",
    ],
    ids=lambda body: body.strip(),
)
def test_parse_lifecycle_state_no_notice(body: str) -> None:
    assert parse_lifecycle_state(body, NOW) is None


def test_every_state_of_the_auto_scaling_api_parses() -> None:
    """Each LifecycleState botocore knows is a notice or no notice, never a malformed body."""
    states = asg_lifecycle_states()
    assert len(states) >= 30
    notices = {s for s in states if parse_lifecycle_state(s, NOW) is not None}
    assert notices == {s for s in states if "Terminat" in s}


@pytest.mark.parametrize(
    "body",
    ["", "  \n", "terminated", "Running", "Warmed:", "<html>500</html>", '{"state": "x"}'],
    ids=["empty", "blank", "lowercase", "ec2-state", "warmed-nothing", "html", "json"],
)
def test_parse_lifecycle_state_rejects_junk(body: str) -> None:
    with pytest.raises(MalformedNotice):
        parse_lifecycle_state(body, NOW)


@pytest.mark.parametrize(
    ("notices", "expected"),
    [
        ([], None),
        ([REBALANCE], REBALANCE),
        ([REBALANCE, SPOT], SPOT),
        ([SPOT, REBALANCE], SPOT),
        ([ASG, REBALANCE], ASG),
        ([ASG, SPOT], SPOT),
        ([LATER_SPOT, SPOT], SPOT),
        ([REBALANCE, ASG, LATER_SPOT], LATER_SPOT),
    ],
    ids=[
        "none",
        "rebalance-only",
        "spot-beats-rebalance",
        "order-does-not-matter",
        "asg-beats-rebalance",
        "deadline-beats-no-deadline",
        "earliest-deadline",
        "all-three",
    ],
)
def test_most_urgent(notices: list[TerminationNotice], expected: TerminationNotice | None) -> None:
    assert most_urgent(notices) == expected
    assert most_urgent(iter(notices)) == expected


@pytest.mark.parametrize(
    ("kind", "imminent"),
    [
        (NoticeKind.SPOT_INTERRUPTION, True),
        (NoticeKind.ASG_TERMINATION, True),
        (NoticeKind.REBALANCE, False),
    ],
    ids=["spot", "asg", "rebalance"],
)
def test_imminent(kind: NoticeKind, imminent: bool) -> None:
    assert notice(kind).imminent is imminent


@pytest.mark.parametrize("original", [SPOT, ASG, REBALANCE], ids=["spot", "asg", "rebalance"])
def test_json_round_trip(original: TerminationNotice) -> None:
    encoded = json.loads(json.dumps(original.to_json()))
    assert TerminationNotice.from_json(encoded) == original


def test_to_json_is_iso8601() -> None:
    assert SPOT.to_json() == {
        "kind": "spot-interruption",
        "deadline": "2026-11-22T10:00:00+00:00",
        "action": "terminate",
        "seen_at": "2026-11-22T09:58:00+00:00",
    }


@pytest.mark.parametrize(
    "data",
    [
        {},
        {**SPOT.to_json(), "kind": "meteor"},
        {**SPOT.to_json(), "kind": ["spot-interruption"]},
        {**SPOT.to_json(), "deadline": "tomorrow"},
        {**SPOT.to_json(), "seen_at": None},
        {**SPOT.to_json(), "action": 3},
    ],
    ids=["empty", "unknown-kind", "unhashable-kind", "bad-deadline", "no-seen-at", "bad-action"],
)
def test_from_json_rejects_malformed(data: dict[str, object]) -> None:
    with pytest.raises(MalformedNotice):
        TerminationNotice.from_json(data)


def test_fixed_source_is_a_notice_source() -> None:
    source = FixedNoticeSource()
    assert isinstance(source, TerminationNoticeSource)
    assert source.poll() is None
    source.notice = SPOT
    assert source.poll() is SPOT
    source.enabled = False
    assert source.poll() is None
    assert source.polls == 3


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_timestamps = st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat())
_spot_like = st.fixed_dictionaries(
    {},
    optional={
        "action": st.text(max_size=12) | _json_values,
        "time": _timestamps | st.text(max_size=25) | _json_values,
    },
).map(json.dumps)


@given(st.text() | _spot_like | _json_values.map(json.dumps))
def test_parse_spot_action_returns_a_notice_or_raises_malformed(body: str) -> None:
    try:
        parsed = parse_spot_action(body, NOW)
    except MalformedNotice:
        return
    assert parsed.kind is NoticeKind.SPOT_INTERRUPTION
    assert parsed.deadline is not None and parsed.deadline.tzinfo is UTC
    assert parsed.action.strip() == parsed.action != ""
