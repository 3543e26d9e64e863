"""The boto3 boundary against the moto HTTP server: network and Redis URL resolution."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from fleetkit.core.aws import AwsClients, resolve_redis_url
from fleetkit.core.environment import Environment, load_environment
from fleetkit.core.errors import ConfigError
from fleetkit.infra.instance_types import check_offered, instance_type_uses
from fleetkit.infra.network import resolve_network

REGION = "us-east-1"


def env_with(tmp_path: Path, extra: str) -> Environment:
    text = f"""
region = "{REGION}"
{extra}
[pools.workers]
queues = ["default"]
instance_types = ["t3.small"]
ami = "ami-0123456789abcdef0"
max_size = 2
"""
    path = tmp_path / "e.toml"
    path.write_text(text)
    return load_environment(str(path))


def test_default_network_is_the_default_vpcs_subnets(aws: str) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    network = resolve_network(load_environment("local"), ec2)
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    assert network.vpc_id == default_vpc["VpcId"]
    expected = {
        s["SubnetId"]
        for s in ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [default_vpc["VpcId"]]}]
        )["Subnets"]
        if s["DefaultForAz"]
    }
    assert set(network.subnet_ids) == expected and expected


def test_explicit_subnets_resolve_to_their_vpc(aws: str, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    env = env_with(tmp_path, f'[network]\nsubnets = ["{subnet}"]')
    network = resolve_network(env, ec2)
    assert (network.vpc_id, network.subnet_ids) == (vpc, (subnet,))


def test_subnets_across_vpcs_are_refused(aws: str, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    subnets = []
    for n in (1, 2):
        vpc = ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16")["Vpc"]["VpcId"]
        subnets.append(ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{n}.1.0/24")["Subnet"])
    listed = ", ".join(f'"{s["SubnetId"]}"' for s in subnets)
    env = env_with(tmp_path, f"[network]\nsubnets = [{listed}]")
    with pytest.raises(ConfigError, match=r"network\.subnets: subnets span VPCs"):
        resolve_network(env, ec2)


def test_unknown_subnet_names_the_key(aws: str, tmp_path: Path) -> None:
    env = env_with(tmp_path, '[network]\nsubnets = ["subnet-0000000000000000f"]')
    with pytest.raises(ConfigError, match=r"network\.subnets"):
        resolve_network(env, boto3.client("ec2", region_name=REGION))


def test_redis_url_from_ssm_secure_string(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETKIT_REDIS_URL", raising=False)
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/fleetkit/t/redis-url", Value="redis://10.0.0.5:6379/3", Type="SecureString"
    )
    env = env_with(tmp_path, '[redis]\nssm_parameter = "/fleetkit/t/redis-url"')
    assert resolve_redis_url(env, AwsClients(REGION)) == "redis://10.0.0.5:6379/3"
    monkeypatch.setenv("FLEETKIT_REDIS_URL", "redis://override:6379/0")
    assert resolve_redis_url(env, AwsClients(REGION)) == "redis://override:6379/0"


def test_missing_redis_everywhere_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETKIT_REDIS_URL", raising=False)
    env = env_with(tmp_path, "")
    with pytest.raises(ConfigError, match="redis: no url or ssm_parameter"):
        resolve_redis_url(env, AwsClients(REGION))


def test_clients_use_adaptive_retries(aws: str) -> None:
    client = AwsClients(REGION).client("autoscaling")
    assert client.meta.config.retries["mode"] == "adaptive"
    assert client.meta.endpoint_url == aws  # AWS_ENDPOINT_URL is honoured


def test_the_region_offers_every_type_of_the_shipped_local_environment(aws: str) -> None:
    env = load_environment("local")
    check_offered(env, boto3.client("ec2", region_name=REGION))  # raises otherwise
    assert {u.name for u in instance_type_uses(env)} == {"t3.micro", "t3.small", "t3a.small"}
