"""The SSM parameter holding the Redis URL: missing, or not a SecureString, is one warning line
(moto for what it emulates; a stubbed client for a refusal)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from fleetkit.core.environment import ENVIRONMENTS_DIR, Environment, load_environment
from fleetkit.infra.redis_parameter import redis_parameter_warning

REGION = "us-east-1"
NAME = "/fleetkit/local/redis-url"
CREATE = (
    f"aws ssm put-parameter --region {REGION} --name {NAME} --type SecureString "
    "--value 'redis://HOST:6379/0'"
)


def in_ssm(tmp_path: Path) -> Environment:
    """The shipped `local` environment with its Redis URL in SSM, as staging and prod have."""
    text = (ENVIRONMENTS_DIR / "local.toml").read_text()
    text = text.replace('url = "redis://127.0.0.1:6379/0"', f'ssm_parameter = "{NAME}"')
    path = tmp_path / "local.toml"
    path.write_text(text)
    return load_environment(str(path))


def test_no_parameter_named_nothing_to_check() -> None:
    assert redis_parameter_warning(load_environment("local"), ssm=None) is None


def test_a_missing_parameter_says_how_to_create_it(aws: str, tmp_path: Path) -> None:
    warning = redis_parameter_warning(in_ssm(tmp_path), boto3.client("ssm", region_name=REGION))
    assert warning == (
        f"SSM parameter {NAME} does not exist in {REGION}: instances will not find the Redis URL; "
        f"create it: {CREATE}"
    )


def test_a_secure_string_is_fine(aws: str, tmp_path: Path) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=NAME, Value="redis://10.0.0.5:6379/0", Type="SecureString")
    assert redis_parameter_warning(in_ssm(tmp_path), ssm) is None


def test_a_plain_string_is_stored_unencrypted(aws: str, tmp_path: Path) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=NAME, Value="redis://10.0.0.5:6379/0", Type="String")
    warning = redis_parameter_warning(in_ssm(tmp_path), ssm)
    assert warning is not None
    assert warning.startswith(f"SSM parameter {NAME} is a String, not a SecureString: ")
    assert warning.endswith(f"aws ssm delete-parameter --region {REGION} --name {NAME}) and "
                            f"create it again: {CREATE}")  # fmt: skip


def test_a_refused_check_is_a_warning_too(tmp_path: Path) -> None:
    ssm = boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(ssm) as stubber:
        stubber.add_client_error(
            "get_parameter",
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform: ssm:GetParameter",
            expected_params={"Name": NAME, "WithDecryption": False},
        )
        warning = redis_parameter_warning(in_ssm(tmp_path), ssm)
        stubber.assert_no_pending_responses()
    assert warning == (
        "could not check that the instances can read the Redis URL: reading SSM parameter "
        f"{NAME}: AccessDeniedException: not authorized to perform: ssm:GetParameter"
    )


@pytest.mark.parametrize("name", ["staging", "prod"])
def test_shipped_environments_that_need_the_parameter(name: str) -> None:
    assert load_environment(name).redis.ssm_parameter == f"/fleetkit/{name}/redis-url"
