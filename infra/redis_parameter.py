"""The SSM parameter an environment's instances read the Redis URL from (`[redis]
ssm_parameter`): the stack grants reading it but does not create it (a secret has no place in a
template), so `diff` and `deploy` say in one line when it is missing. A warning, not an error:
the stack can be deployed first and the parameter created before any instance needs it.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from fleetkit.core.aws import aws_errors, error_code
from fleetkit.core.environment import Environment
from fleetkit.core.errors import AwsError

__all__ = ["create_command", "redis_parameter_warning"]


def create_command(env: Environment, name: str) -> str:
    """The AWS CLI command that creates the parameter."""
    return (
        f"aws ssm put-parameter --region {env.region} --name {name} --type SecureString "
        "--value 'redis://HOST:6379/0'"
    )


def redis_parameter_warning(env: Environment, ssm: Any) -> str | None:
    """None when the environment names no parameter, or it exists as a SecureString."""
    name = env.redis.ssm_parameter
    if not name:
        return None
    try:
        # Without decryption: the check needs no kms:Decrypt, and no secret leaves AWS.
        with aws_errors(f"reading SSM parameter {name}"):
            try:
                parameter = ssm.get_parameter(Name=name, WithDecryption=False)["Parameter"]
            except ClientError as exc:
                if error_code(exc) == "ParameterNotFound":
                    return (
                        f"SSM parameter {name} does not exist in {env.region}: instances will not "
                        f"find the Redis URL; create it: {create_command(env, name)}"
                    )
                raise
    except AwsError as exc:
        return f"could not check that the instances can read the Redis URL: {exc}"
    if parameter.get("Type") != "SecureString":
        return (
            f"SSM parameter {name} is a {parameter.get('Type')}, not a SecureString: the Redis "
            f"URL (and any password in it) is stored unencrypted; delete it (aws ssm "
            f"delete-parameter --region {env.region} --name {name}) and create it again: "
            f"{create_command(env, name)}"
        )
    return None
