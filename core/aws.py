"""The boto3 boundary shared by every part: clients for one environment's region, and
botocore's exceptions translated into one-line errors saying what was being done.

boto3 itself honours AWS_PROFILE, AWS_ENDPOINT_URL (moto, LocalStack, the local sandbox) and
the usual credential chain; nothing here overrides them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)
from botocore.parsers import ResponseParserError

from fleetkit.core.errors import AwsError, ConfigError, FleetkitError

if TYPE_CHECKING:
    import boto3

    from fleetkit.core.environment import Environment

__all__ = [
    "AWS_EXCEPTIONS",
    "RETRY_CONFIG",
    "AwsClients",
    "aws_error",
    "aws_errors",
    "error_code",
    "resolve_redis_url",
]

RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 10},
    user_agent_extra="fleetkit",
)


# What a boto3 call raises when AWS refuses, cannot be reached, or answers something botocore
# cannot parse (a proxy's HTML page, an emulator's 500): the last is no BotoCoreError.
AWS_EXCEPTIONS = (BotoCoreError, ClientError, ResponseParserError)
AwsException = BotoCoreError | ClientError | ResponseParserError


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def aws_error(
    exc: AwsException, doing: str, *, error: type[FleetkitError] = AwsError
) -> FleetkitError:
    """botocore's exception as one of ours, one line: `<doing>: <code>: <message>`.

    An AWS refusal (ClientError) becomes `error`, so a package can raise its own subclass
    (infra's CloudFormation adapter raises `StackError`); anything else is an `AwsError`.
    """
    if isinstance(exc, ClientError):
        detail = exc.response.get("Error", {})
        return error(f"{doing}: {detail.get('Code')}: {detail.get('Message')}")
    if isinstance(exc, NoCredentialsError):
        return AwsError(
            f"{doing}: no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, ProfileNotFound | NoRegionError):
        return AwsError(f"{doing}: {exc}")
    if isinstance(exc, ResponseParserError):
        # Its message goes on with the whole response body; the first line says what failed
        # (and ends in "Further retries may succeed:", which is no advice to a user).
        first = (str(exc).strip().splitlines() or ["empty response"])[0]
        first = re.sub(r"\s*Further retries may succeed:?$", "", first)
        return AwsError(f"{doing}: unreadable answer from AWS: {first}")
    return AwsError(f"{doing}: {exc}")


@contextmanager
def aws_errors(doing: str, *, error: type[FleetkitError] = AwsError) -> Iterator[None]:
    """Raise botocore's exceptions as ours (`aws_error`)."""
    try:
        yield
    except AWS_EXCEPTIONS as exc:
        raise aws_error(exc, doing, error=error) from exc


class AwsClients:
    """Lazily created clients for one environment's region, sharing one session."""

    def __init__(self, region: str, session: boto3.Session | None = None) -> None:
        self.region = region
        self._session = session
        self._clients: dict[str, Any] = {}

    @classmethod
    def for_environment(cls, env: Environment) -> AwsClients:
        return cls(env.region)

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            import boto3  # here: reading an environment needs no boto3

            with aws_errors("opening an AWS session"):
                self._session = boto3.Session(region_name=self.region)
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            with aws_errors(f"creating the {service} client"):
                # service is a runtime string: the stubs only type literal names.
                self._clients[service] = self.session.client(  # type: ignore[call-overload]
                    service, config=RETRY_CONFIG
                )
        return self._clients[service]

    def use(self, service: str, client: Any) -> None:
        """Put a ready client in place (tests hand in stubbed clients this way)."""
        self._clients[service] = client


def resolve_redis_url(env: Environment, clients: AwsClients) -> str:
    """FLEETKIT_REDIS_URL, else the file's url, else the SSM SecureString it names."""
    url = env.redis_url()
    if url:
        return url
    name = env.redis.ssm_parameter
    if not name:
        raise ConfigError(
            f"{env.source or env.name}: redis: no url or ssm_parameter, and FLEETKIT_REDIS_URL "
            "is not set"
        )
    with aws_errors(f"reading SSM parameter {name}"):
        value: str = clients.client("ssm").get_parameter(Name=name, WithDecryption=True)[
            "Parameter"
        ]["Value"]
    return value
