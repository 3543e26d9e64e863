"""docs/autoscaler.md as written: every command of its `sh` blocks runs and exits 0 against the
`staging` environment deployed into the moto server (and a real redis-server), and every
`$ command` of its `console` blocks prints exactly the lines shown under it.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worker.procs import wait_for

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "autoscaler.md"
PROGRAM = [sys.executable, "-c", "from fleetkit.autoscaler.cli import main; main()"]


def blocks(kind: str) -> list[list[str]]:
    return [
        b.splitlines() for b in re.findall(rf"^```{kind}\n(.*?)^```", DOC.read_text(), re.M | re.S)
    ]


def commands() -> list[list[str]]:
    """The `autoscaler …` lines of the sh blocks, without their comments."""
    return [
        shlex.split(line, comments=True)
        for block in blocks("sh")
        for line in block
        if line.startswith("autoscaler ")
    ]


def examples() -> list[tuple[list[str], list[str]]]:
    """(command, the lines it prints) of the console blocks."""
    found: list[tuple[list[str], list[str]]] = []
    for block in blocks("console"):
        for line in block:
            if line.startswith("$ "):
                found.append((shlex.split(line[2:]), []))
            else:
                found[-1][1].append(line)
    return found


def autoscaler(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert args[0] == "autoscaler"
    return subprocess.run(
        [*PROGRAM, *args[1:]], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def doc_env(aws: str, redis_url: str, cli_env: dict[str, str]) -> dict[str, str]:
    env = dict(cli_env)
    env.pop("FLEETKIT_ENV", None)  # `autoscaler status` without --env must say it is missing
    return env


def test_the_docs_commands_work_as_written(doc_env: dict[str, str], tmp_path: Path) -> None:
    shown = examples()
    assert len(shown) >= 4
    for args, lines in shown:  # before the deploy: "not deployed" is one of them
        ran = autoscaler(args, doc_env)
        assert ran.returncode != 0, args
        assert ran.stderr.splitlines() == lines, args

    deployed = subprocess.run(
        [sys.executable, "-m", "fleetkit.infra", "deploy", "--env", "staging", "--yes"],
        env=doc_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stderr

    listed = commands()
    assert len(listed) == 7
    for args in listed:
        if args[1] == "run" and "--once" not in args:
            run_service(args, doc_env, tmp_path / "service.log")
            continue
        ran = autoscaler(args, doc_env)
        assert ran.returncode == 0, (args, ran.stderr)
        assert "error:" not in ran.stderr, (args, ran.stderr)
        if "--json" in args:
            assert json.loads(ran.stdout)["deployed"] is True


def run_service(args: list[str], env: dict[str, str], log: Path) -> None:
    """The service until its first decision, then SIGTERM. On port 0: the default metrics port
    may be taken on a shared machine."""
    with log.open("w") as stderr:
        service = subprocess.Popen(
            [*PROGRAM, *args[1:], "--metrics-port", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "autoscaler.decision" in log.read_text(), 60, "the first decision")
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0, log.read_text()
    finally:
        if service.poll() is None:
            service.kill()
    assert "error:" not in log.read_text()
