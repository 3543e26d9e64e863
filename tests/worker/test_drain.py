"""The drain's decision: whether a running job can finish before its instance goes away (pure)."""

from __future__ import annotations

import pytest

from fleetkit.worker.drain import handback_reason

NOW = 1_000.0
CASES = [
    # (started, deadline, mean, timeout, expected)
    ("no-deadline", 990.0, None, 5.0, 60.0, True),
    ("fits-by-mean", 990.0, 1_100.0, 30.0, None, False),
    ("too-long-by-mean", 990.0, 1_100.0, 200.0, None, True),
    ("inside-margin", 990.0, 1_030.0, 40.0, None, True),  # ends 1030 > 1030 - 15
    ("timeout-when-no-mean", 990.0, 1_100.0, None, 60.0, False),
    ("timeout-too-long", 990.0, 1_100.0, None, 600.0, True),
    ("unknown-length", 990.0, 1_100.0, None, None, True),
    ("overdue-by-mean", 900.0, 1_100.0, 30.0, None, False),  # already past its mean: ends now
]


def reason_at_now(
    started: float, deadline: float | None, mean: float | None, timeout: float | None
) -> str | None:
    """The drain's reason at NOW with a 15 s safety margin."""
    return handback_reason(
        now=NOW,
        started_at=started,
        deadline=deadline,
        safety_margin_s=15,
        mean_duration_s=mean,
        timeout_s=timeout,
    )


@pytest.mark.parametrize(
    ("started", "deadline", "mean", "timeout", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_should_hand_back(
    started: float,
    deadline: float | None,
    mean: float | None,
    timeout: float | None,
    expected: bool,
) -> None:
    assert (reason_at_now(started, deadline, mean, timeout) is not None) is expected


@pytest.mark.parametrize(
    ("started", "deadline", "mean", "timeout", "reason"),
    [
        (990.0, None, 5.0, 60.0, "the notice gives no deadline"),
        (
            990.0,
            1_100.0,
            200.0,
            None,
            "expected to take 190 s more (its mean duration is 200 s), "
            "only 85 s left before the deadline less the 15 s safety margin",
        ),
        (
            1_000.0,
            1_010.0,
            None,
            30.0,
            "expected to take 30 s more (its timeout is 30 s; no mean duration yet), "
            "and the deadline less the 15 s safety margin has passed",
        ),
        (
            990.0,
            1_100.0,
            None,
            None,
            "no mean duration yet and no timeout: it cannot be trusted to finish",
        ),
        (990.0, 1_100.0, 30.0, None, None),
    ],
    ids=["no-deadline", "mean-too-long", "timeout-past-the-window", "unknown-length", "fits"],
)
def test_the_reason_says_what_does_not_fit(
    started: float,
    deadline: float | None,
    mean: float | None,
    timeout: float | None,
    reason: str | None,
) -> None:
    assert reason_at_now(started, deadline, mean, timeout) == reason
