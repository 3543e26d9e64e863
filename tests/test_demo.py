"""`make demo` end to end: the script the README's first command runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_deploys_and_the_autoscaler_sizes_the_burst(project_root: Path) -> None:
    ran = subprocess.run(
        [sys.executable, str(project_root / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "demo complete" in ran.stdout
    # 40 jobs * 60 s (default duration) ÷ 300 s = 8 processes, 2 per instance
    assert "spot desired 0 → 4" in ran.stderr
    assert "spot desired 4 → 12" in ran.stdout
