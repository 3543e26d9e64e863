"""The CLI's usage errors: one line, `autoscaler: error: …`, naming the option or value; exit 2.

All of these fail before anything is connected to (most before any environment is loaded).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fleetkit.autoscaler.cli import main

USAGE_ERRORS = [
    # (id, arguments, what the line says)
    ("no-pool", ["scale"], "Missing argument 'POOL'"),
    ("no-count", ["scale", "workers"], "Missing argument 'N'"),
    ("no-env", ["status"], "Missing option '--env' (or set FLEETKIT_ENV)"),
    ("env-without-value", ["status", "--env"], "Option '--env' requires an argument"),
    ("interval-zero", ["run", "--env", "local", "--interval", "0"], "'--interval': 0.0"),
    ("interval-text", ["run", "--env", "local", "--interval", "soon"], "'--interval': 'soon'"),
    ("port-too-high", ["run", "--env", "local", "--metrics-port", "70000"], "'--metrics-port'"),
    ("unknown-option", ["run", "--env", "local", "--bogus"], "No such option '--bogus'"),
    ("unknown-command", ["grow"], "No such command 'grow'"),
    ("extra-argument", ["release", "workers", "more", "--env", "local"], "(more)"),
    ("count-not-a-number", ["scale", "workers", "many", "--env", "local"], "N 'many'"),
    (
        "hold-not-a-duration",
        ["scale", "workers", "5", "--env", "local", "--hold", "soon"],
        "'soon'",
    ),
    ("hold-too-long", ["scale", "workers", "5", "--env", "local", "--hold", "8d"], "at most 7d"),
]


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in USAGE_ERRORS], ids=[c[0] for c in USAGE_ERRORS]
)
def test_a_usage_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.delenv("FLEETKIT_ENV", raising=False)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("autoscaler: error: ")
    assert message in lines[0]


def test_fleetkit_env_stands_in_for_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETKIT_ENV", "local")
    result = CliRunner().invoke(main, ["scale", "workers", "5", "--hold", "8d"])
    assert result.exit_code == 2
    assert "--env" not in result.stderr and "--hold '8d'" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["--version"]])
def test_help_and_version_still_exit_0(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout


@pytest.mark.parametrize("args", [["release", "workers"], ["run", "--once"]])
def test_a_redis_url_that_is_no_url_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("FLEETKIT_REDIS_URL", "127.0.0.1:6379")  # the scheme left out

    result = CliRunner().invoke(main, [*args, "--env", "local"])

    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("autoscaler: error: FLEETKIT_REDIS_URL: not a Redis URL: ")
    assert "127.0.0.1:6379" not in result.stderr  # a URL may hold a password
    assert "Traceback" not in result.stderr
