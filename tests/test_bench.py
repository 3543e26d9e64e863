"""The benchmarks still run and print what docs/benchmarks.md shows (a short run: not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.worker import percentile


def test_bench_autoscaler_short_run_prints_its_table_and_json(project_root: Path) -> None:
    ran = subprocess.run(
        [sys.executable, str(project_root / "bench" / "autoscaler.py"), "--ticks", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    lines = ran.stdout.splitlines()
    assert lines[0] == (
        "| workers | queues | tick p50 ms | tick p95 ms | tick max ms | Redis round trips/tick |"
    )
    assert [line.split(" | ")[0] for line in lines[2:5]] == ["| 10", "| 100", "| 1,000"]
    results = json.loads(lines[5])
    assert [r["workers"] for r in results] == [10, 100, 1000]
    for r in results:
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["max_ms"]
        assert r["round_trips_per_tick"] == 4


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([float(v) for v in range(1, 11)], 50, 5.5),  # the median
        ([float(v) for v in range(1, 11)], 95, 9.55),  # between the two highest samples
        ([float(v) for v in range(1, 101)], 99, 99.01),
        ([3.0], 99, 3.0),  # one sample is every percentile
    ],
)
def test_bench_worker_percentiles_interpolate(values: list[float], p: int, expected: float) -> None:
    assert percentile(values, p) == pytest.approx(expected)
