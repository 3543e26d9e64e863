"""The boto3 boundary: clients with adaptive retries, and botocore errors turned into ours.

boto3 itself honours AWS_PROFILE, AWS_ENDPOINT_URL (moto, LocalStack) and the usual credential
chain; nothing here overrides them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from fleetkit.infra.environment import Environment
from fleetkit.infra.errors import ConfigError, InfraError, StackError

__all__ = [
    "RETRY_CONFIG",
    "AwsClients",
    "Network",
    "aws_errors",
    "error_code",
    "resolve_network",
    "resolve_redis_url",
]

RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 10},
    user_agent_extra="fleetkit",
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Translate botocore's exceptions into one-line InfraErrors saying what we were doing."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise StackError(f"{doing}: {error.get('Code')}: {error.get('Message')}") from exc
    except NoCredentialsError as exc:
        raise InfraError(
            f"{doing}: no AWS credentials (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)"
        ) from exc
    except (ProfileNotFound, NoRegionError) as exc:
        raise InfraError(f"{doing}: {exc}") from exc
    except BotoCoreError as exc:
        raise InfraError(f"{doing}: {exc}") from exc


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


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_ids: tuple[str, ...]


def resolve_network(env: Environment, ec2: Any) -> Network:
    """`"default"` → the default VPC's default subnets; explicit subnets → their VPC."""
    source = env.source or env.name
    if env.network.subnets == "default":
        with aws_errors("finding the default VPC"):
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise ConfigError(
                f"{source}: network.subnets: 'default' but region {env.region} has no default "
                "VPC; list subnet ids instead"
            )
        vpc_id = vpcs[0]["VpcId"]
        with aws_errors("listing the default VPC's subnets"):
            subnets = ec2.describe_subnets(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]},
                    {"Name": "default-for-az", "Values": ["true"]},
                ]
            )["Subnets"]
        if not subnets:
            raise ConfigError(f"{source}: network.subnets: default VPC {vpc_id} has no subnets")
        return Network(vpc_id, tuple(sorted(s["SubnetId"] for s in subnets)))
    wanted = list(env.network.subnets)
    with aws_errors("looking up network.subnets"):
        try:
            found = ec2.describe_subnets(SubnetIds=wanted)["Subnets"]
        except ClientError as exc:
            if error_code(exc).startswith("InvalidSubnet"):
                raise ConfigError(f"{source}: network.subnets: {exc}") from None
            raise
    vpc_ids = sorted({s["VpcId"] for s in found})
    if len(vpc_ids) != 1:
        raise ConfigError(
            f"{source}: network.subnets: subnets span VPCs {', '.join(vpc_ids)}; use one VPC"
        )
    return Network(vpc_ids[0], tuple(wanted))


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
