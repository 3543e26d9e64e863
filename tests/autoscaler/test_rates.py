"""Rates over a window of queue samples (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetkit.autoscaler.model import QueueLoad
from fleetkit.autoscaler.rates import RateWindow

WINDOW = 60.0

# (id, samples as (t, queued, in_flight, done, seconds), expected load after the last one)
CASES = [
    ("single-sample", [(0, 5, 1, 0, 0.0)], QueueLoad(5, 1)),
    (
        "single-sample-cumulative-mean",
        [(0, 5, 1, 4, 20.0)],
        QueueLoad(5, 1, mean_duration_s=5.0),
    ),
    (
        "draining-without-arrivals",
        [(0, 10, 2, 0, 0.0), (10, 8, 2, 2, 6.0)],
        QueueLoad(8, 2, arrival_rate=0.0, completion_rate=0.2, mean_duration_s=3.0),
    ),
    (
        "arrivals-counted-whether-waiting-running-or-ended",
        [(0, 0, 0, 0, 0.0), (10, 20, 2, 3, 9.0)],
        QueueLoad(20, 2, arrival_rate=2.5, completion_rate=0.3, mean_duration_s=3.0),
    ),
    (
        "oldest-sample-inside-the-window",
        [(0, 0, 0, 0, 0.0), (30, 0, 0, 10, 10.0), (70, 0, 0, 50, 90.0)],
        QueueLoad(0, 0, arrival_rate=1.0, completion_rate=1.0, mean_duration_s=2.0),
    ),
    (
        "long-gap-keeps-the-previous-sample",
        [(0, 0, 0, 0, 0.0), (600, 0, 0, 60, 120.0)],
        QueueLoad(0, 0, arrival_rate=0.1, completion_rate=0.1, mean_duration_s=2.0),
    ),
    (
        "none-ended-in-window-uses-cumulative-mean",
        [(0, 0, 1, 10, 50.0), (10, 0, 1, 10, 50.0)],
        QueueLoad(0, 1, arrival_rate=0.0, completion_rate=0.0, mean_duration_s=5.0),
    ),
    (
        "jobs-deleted-without-ending-never-negative",
        [(0, 50, 0, 0, 0.0), (10, 0, 0, 0, 0.0)],
        QueueLoad(0, 0, arrival_rate=0.0, completion_rate=0.0),
    ),
    (
        "counters-reset-by-a-flushed-redis",
        [(0, 0, 0, 100, 500.0), (10, 2, 0, 3, 6.0)],
        QueueLoad(2, 0, mean_duration_s=2.0),
    ),
    (
        "seconds-reset-alone",
        [(0, 0, 0, 10, 500.0), (10, 0, 0, 10, 6.0)],
        QueueLoad(0, 0, mean_duration_s=0.6),
    ),
    ("clock-stepped-back", [(100, 1, 0, 0, 0.0), (50, 9, 0, 0, 0.0)], QueueLoad(9, 0)),
    ("same-instant", [(5, 1, 0, 0, 0.0), (5, 9, 0, 0, 0.0)], QueueLoad(9, 0)),
    (
        "rates-resume-after-a-reset",
        [(0, 0, 0, 100, 100.0), (10, 0, 0, 0, 0.0), (20, 0, 0, 5, 15.0)],
        QueueLoad(0, 0, arrival_rate=0.5, completion_rate=0.5, mean_duration_s=3.0),
    ),
]


@pytest.mark.parametrize(("samples", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rates(samples: list[tuple[float, int, int, int, float]], expected: QueueLoad) -> None:
    window = RateWindow(WINDOW)
    load = None
    for sample in samples:
        load = window.add(*sample)
    assert_load(load, expected)


def assert_load(actual: QueueLoad | None, expected: QueueLoad) -> None:
    """Equal counts; each rate None where expected, else equal within float rounding."""
    assert actual is not None
    assert (actual.queued, actual.in_flight) == (expected.queued, expected.in_flight)
    for name in ("arrival_rate", "completion_rate", "mean_duration_s"):
        got, want = getattr(actual, name), getattr(expected, name)
        assert (got is None) == (want is None), name
        if want is not None:
            assert got == pytest.approx(want), name


def test_samples_stay_trimmed_to_the_window() -> None:
    window = RateWindow(WINDOW)
    for i in range(1_000):
        window.add(i * 10.0, 0, 0, i, float(i))
    times = [s.t for s in window.samples]
    assert times[-1] == 9_990.0
    assert times[0] >= 9_990.0 - WINDOW
    assert len(times) == 7


@pytest.mark.parametrize("window_s", [0.0, -1.0, float("nan")], ids=["zero", "negative", "nan"])
def test_window_must_be_positive(window_s: float) -> None:
    with pytest.raises(ValueError, match="window_s must be positive"):
        RateWindow(window_s)


_samples = st.lists(
    st.tuples(
        st.floats(0, 1e6, allow_nan=False),
        st.integers(0, 10_000),
        st.integers(0, 1_000),
        st.integers(0, 1_000_000),
        st.floats(0, 1e7, allow_nan=False),
    ),
    min_size=1,
    max_size=30,
)


@given(window_s=st.floats(1, 3_600), samples=_samples)
def test_rates_are_never_negative_and_none_from_one_sample(
    window_s: float, samples: list[tuple[float, int, int, int, float]]
) -> None:
    window = RateWindow(window_s)
    for i, sample in enumerate(samples):
        load = window.add(*sample)
        rates = (load.arrival_rate, load.completion_rate)
        if i == 0 or len(window.samples) == 1:
            assert rates == (None, None)
        for value in (*rates, load.mean_duration_s):
            assert value is None or value >= 0
        assert window.samples[0].t >= sample[0] - window_s or len(window.samples) <= 2
