"""`infra` against an AWS endpoint nobody listens on: a waiting line while botocore retries,
then one error line and exit 1, never silence, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.redis_server import free_port

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "start_timeout",
    # botocore's own retries end first (about 25 s); a start timeout shorter than one attempt
    # ends the wait at once.
    [None, "66"],
    ids=["default-120-s", "short-start-timeout"],
)
def test_unreachable_aws_says_it_waits_then_fails_in_one_line(
    cli_env: dict[str, str], start_timeout: str | None
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {
        **cli_env,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    env.pop("AWS_PROFILE", None)
    env.pop("FLEETKIT_START_TIMEOUT_S", None)
    if start_timeout:
        env["FLEETKIT_START_TIMEOUT_S"] = start_timeout

    result = subprocess.run(
        [sys.executable, "-m", "fleetkit.infra", "status", "--env", "local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 1
    output = (result.stdout + result.stderr).splitlines()
    assert len(output) <= 40
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    waiting, error = result.stderr.splitlines()
    assert waiting.startswith(f"waiting for AWS at {endpoint}: Could not connect to the endpoint")
    assert error.startswith("infra: error: describing stack fleetkit-local: ")
    assert f'Could not connect to the endpoint URL: "{endpoint}/"' in error
    if start_timeout:
        assert "not reached" in error and "66 s start-up timeout" in error
