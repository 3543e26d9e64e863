"""Whether a running job can finish before its instance goes away (pure)."""

from __future__ import annotations

import pytest

from fleetkit.worker.handback import should_hand_back

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
    assert (
        should_hand_back(
            now=NOW,
            started_at=started,
            deadline=deadline,
            safety_margin_s=15,
            mean_duration_s=mean,
            timeout_s=timeout,
        )
        is expected
    )
