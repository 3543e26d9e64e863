"""`fleet-worker run`'s bad input: one line `fleet-worker: error: …`, exit 2, nothing started."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fleetkit.worker.cli import main

BAD = [
    (
        "imds-flag",
        ["--queues", "q", "--imds-endpoint", "ftp://x"],
        {},
        "fleet-worker: error: --imds-endpoint: 'ftp://x' is not an http(s) URL",
    ),
    (
        "imds-variable",
        ["--queues", "q"],
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "ftp://x"},
        "fleet-worker: error: $AWS_EC2_METADATA_SERVICE_ENDPOINT is 'ftp://x'",
    ),
    ("no-queues", [], {}, "fleet-worker: error: no queues: pass --queues a,b or --env"),
    (
        "processes",
        ["--queues", "q", "--processes", "0"],
        {},
        "fleet-worker: error: --processes: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "unknown-pool",
        ["--env", "local", "--pool", "gpu"],
        {},
        "fleet-worker: error: --pool 'gpu': not in",
    ),
    ("pool-without-env", ["--queues", "q", "--pool", "gpu"], {}, "--pool needs --env"),
]


@pytest.mark.parametrize(
    ("args", "environ", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_input_is_one_line_and_exit_2(
    redis_url: str, args: list[str], environ: dict[str, str], expected: str
) -> None:
    result = CliRunner().invoke(main, ["run", "--redis-url", redis_url, *args], env=environ)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.output


def test_every_bad_flag_is_a_line_of_its_own(redis_url: str) -> None:
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--redis-url",
            redis_url,
            "--queues",
            "q",
            "--processes",
            "0",
            "--poll-interval",
            "0",
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "fleet-worker: error: --processes: Input should be greater than or equal to 1 (got 0)",
        "fleet-worker: error: --poll-interval: Input should be greater than 0 (got 0.0)",
    ]


def test_run_help_shows_every_default() -> None:
    shown = " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())
    for default in (
        "[default: (workers)]",  # --pool
        "[default: (the pool's processes_per_instance, else 1)]",
        "[default: (the pool's drain_timeout_s - 30, else 600.0)]",
        "[default: (2.0)]",  # --poll-interval
        "[default: (INFO)]",  # --log-level
        "[default: (on)]",  # --prefork
    ):
        assert default in shown, default
