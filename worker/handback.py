"""Whether a running job can finish before its instance goes away, and why not (pure)."""

from __future__ import annotations

__all__ = ["handback_reason"]


def handback_reason(
    *,
    now: float,
    started_at: float,
    deadline: float | None,
    safety_margin_s: float,
    mean_duration_s: float | None,
    timeout_s: float | None,
) -> str | None:
    """Why a running job cannot finish before the deadline minus the margin; None if it can.

    The job is expected to run for its function's observed mean duration, else for its timeout.
    """
    if deadline is None:
        return "the notice gives no deadline"
    expected = mean_duration_s if mean_duration_s is not None else timeout_s
    if expected is None or expected < 0:
        return "no mean duration yet and no timeout: it cannot be trusted to finish"
    remaining = max(expected - (now - started_at), 0.0)
    window = deadline - safety_margin_s - now
    if remaining <= window:
        return None
    if mean_duration_s is not None:
        basis = f"its mean duration is {_seconds(expected)}"
    else:
        basis = f"its timeout is {_seconds(expected)}; no mean duration yet"
    expectation = f"expected to take {_seconds(remaining)} more ({basis})"
    margin = f"the deadline less the {_seconds(safety_margin_s)} safety margin"
    if window <= 0:
        return f"{expectation}, and {margin} has passed"
    return f"{expectation}, only {_seconds(window)} left before {margin}"


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
