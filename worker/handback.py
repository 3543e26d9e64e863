"""Whether a running job can finish before its instance goes away (pure)."""

from __future__ import annotations

__all__ = ["should_hand_back"]


def should_hand_back(
    *,
    now: float,
    started_at: float,
    deadline: float | None,
    safety_margin_s: float,
    mean_duration_s: float | None,
    timeout_s: float | None,
) -> bool:
    """Whether a running job cannot finish before the deadline minus the margin."""
    if deadline is None:
        return True
    expected = mean_duration_s if mean_duration_s is not None else timeout_s
    if expected is None or expected < 0:
        return True  # no idea how long it runs: it cannot be trusted to finish
    remaining = max(expected - (now - started_at), 0.0)
    return now + remaining > deadline - safety_margin_s
