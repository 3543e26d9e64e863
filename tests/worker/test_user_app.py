"""fleetkit shares the user's application environment: an application whose own top-level
modules are named `worker` and `infra` (common names) runs under `fleet-worker` unharmed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus

pytestmark = pytest.mark.e2e

APP = {
    # The application's own `worker` module, holding its job functions...
    "worker.py": """
        from infra import settings

        def add(a, b):
            return a + b + settings.BONUS

        def where():
            import fleetkit.worker.checkpoint as ours
            import worker as theirs
            return [theirs.__file__, ours.__file__]
    """,
    # ... and its own `infra` package, which the jobs import.
    "infra/__init__.py": "",
    "infra/settings.py": "BONUS = 100\n",
}


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    for name, text in APP.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize("mode", [[], ["--simple"]], ids=["forking", "simple"])
def test_an_app_with_its_own_worker_and_infra_modules_runs(
    app: Path, redis_url: str, redis: Redis, tmp_path: Path, mode: list[str]
) -> None:
    queue = Queue("app", connection=redis)
    added = queue.enqueue("worker.add", 1, 2)
    found = queue.enqueue("worker.where")
    program = shutil.which("fleet-worker", path=str(Path(sys.executable).parent))
    assert program is not None
    ran = subprocess.run(
        [program, "run", "--redis-url", redis_url, "--queues", "app", "--burst", *mode,
         "--run-dir", str(tmp_path / "run"), "--log-level", "WARNING"],
        cwd=app,
        # As if the application were installed: importable from anywhere, ahead of nothing.
        env={**os.environ, "PYTHONPATH": str(app)},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert added.get_status(refresh=True) == JobStatus.FINISHED
    assert added.return_value() == 103
    theirs, ours = found.return_value()
    assert theirs == str(app / "worker.py")
    assert Path(ours).name == "checkpoint.py" and "fleetkit" in Path(ours).parts
