"""Environment files: shipped ones load, bad ones give one line naming file and key, exit 2."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from fleetkit.core.environment import Environment, load_environment
from fleetkit.core.errors import ConfigError
from fleetkit.core.settings import LaunchMode
from fleetkit.infra.cli import main

VALID = """
region = "eu-west-1"
[redis]
url = "redis://127.0.0.1:6379/0"
[pools.workers]
queues = ["default"]
instance_types = ["m5.large", "m6i.large"]
ami = "ami-0123456789abcdef0"
max_size = 10
"""


def write(tmp_path: Path, text: str, name: str = "env.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["local", "staging", "prod"])
def test_shipped_environments_load(name: str) -> None:
    env = load_environment(name)
    assert env.name == name
    assert "workers" in env.pools
    assert env.stack == f"fleetkit-{name}"


def test_staging_is_sized_for_a_500_instance_burst() -> None:
    workers = load_environment("staging").pools["workers"]
    assert workers.max_size >= 500
    assert workers.queues == ["default"]
    assert len(workers.instance_types) >= 3


def test_prod_has_termination_protection() -> None:
    assert load_environment("prod").termination_protection is True


def test_env_by_path_and_defaults(tmp_path: Path) -> None:
    env = load_environment(str(write(tmp_path, VALID, "mine.toml")))
    pool = env.pools["workers"]
    assert env.name == "mine"
    assert env.network.subnets == "default"
    assert env.network.ssh_cidr is None
    assert pool.launch_mode is LaunchMode.TEMPLATE
    assert pool.spot.allocation_strategy == "price-capacity-optimized"
    assert pool.spot.max_price is None
    assert pool.on_demand_max_size == 10


BAD_CASES = [
    ("unknown-top-key", VALID + 'colour = "blue"\n', "colour: unknown key"),
    (
        "unknown-pool-key",
        VALID.replace("max_size = 10", "max_size = 10\nmax_szie = 3"),
        "pools.workers.max_szie: unknown key",
    ),
    (
        "min-above-max",
        VALID.replace("max_size = 10", "max_size = 10\nmin_size = 11"),
        "pools.workers: min_size 11 is above max_size 10",
    ),
    (
        "negative-max",
        VALID.replace("max_size = 10", "max_size = -1"),
        "pools.workers.max_size: Input should be greater than or equal to 0 (got -1)",
    ),
    (
        "bad-strategy",
        VALID + '[pools.workers.spot]\nallocation_strategy = "cheapest"\n',
        "pools.workers.spot.allocation_strategy",
    ),
    ("no-queues", VALID.replace('queues = ["default"]', "queues = []"), "pools.workers.queues"),
    ("bad-ami", VALID.replace("ami-0123456789abcdef0", "ubuntu"), "pools.workers.ami"),
    ("bad-type", VALID.replace("m5.large", "large"), "pools.workers.instance_types.0"),
    ("dup-types", VALID.replace('"m6i.large"', '"m5.large"'), "instance types must be unique"),
    (
        "legacy-needs-bid",
        VALID.replace("max_size = 10", 'max_size = 10\nlaunch_mode = "configuration"'),
        "launch_mode 'configuration' needs spot.max_price",
    ),
    (
        "both-redis",
        VALID.replace("[redis]\n", '[redis]\nssm_parameter = "/x/y"\n'),
        "redis: set either url or ssm_parameter, not both",
    ),
    ("bad-subnet", VALID + '[network]\nsubnets = ["sub-1"]\n', "network.subnets"),
    ("bad-cidr", VALID + '[network]\nssh_cidr = "everyone"\n', "network.ssh_cidr"),
    (
        "cidr-host-bits",
        VALID + '[network]\nssh_cidr = "10.0.0.5/16"\n',
        "network.ssh_cidr: '10.0.0.5/16' has host bits set: the network is 10.0.0.0/16",
    ),
    (
        "unknown-region",
        VALID.replace('"eu-west-1"', '"xx-fake-9"'),
        "region: 'xx-fake-9' is not an AWS region",
    ),
    (
        "reserved-pool",
        VALID.replace("[pools.workers]", "[pools.autoscaler]"),
        "pool name 'autoscaler' is reserved",
    ),
    ("no-region", VALID.replace('region = "eu-west-1"', ""), "region: Field required"),
    (
        "zero-drain-target",
        VALID + "[pools.workers.scaling]\ntarget_drain_s = 0\n",
        "pools.workers.scaling.target_drain_s: Input should be greater than 0 (got 0)",
    ),
    (
        "unknown-scaling-key",
        VALID + "[pools.workers.scaling]\ncooldown = 5\n",
        "pools.workers.scaling.cooldown: unknown key",
    ),
    (
        "negative-grace",
        VALID + "[pools.workers.scaling]\nfallback_grace_s = -1\n",
        "pools.workers.scaling.fallback_grace_s",
    ),
    (
        "lock-shorter-than-tick",
        VALID + "[autoscaler]\ninterval_s = 60\nleader_ttl_s = 30\n",
        "autoscaler: leader_ttl_s 30 must be longer than interval_s 60",
    ),
    ("bad-toml", VALID + "[pools\n", "invalid TOML"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_invalid_file_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_environment(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_cli_exit_code_2_and_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("max_size = 10", "max_size = 10\nmin_size = 11"))
    result = CliRunner().invoke(main, ["render", "--env", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert f"{path}: pools.workers: min_size 11 is above max_size 10" in result.output


def test_unknown_environment_name_lists_shipped_ones() -> None:
    result = CliRunner().invoke(main, ["render", "--env", "nowhere"])
    assert result.exit_code == 2
    assert "no such environment file" in result.output
    assert "local, prod, staging" in result.output


def test_redis_url_override(tmp_path: Path) -> None:
    env = load_environment(str(write(tmp_path, VALID)))
    assert env.redis_url({}) == "redis://127.0.0.1:6379/0"
    assert env.redis_url({"FLEETKIT_REDIS_URL": "redis://other:1/2"}) == "redis://other:1/2"
    staging = load_environment("staging")
    assert staging.redis_url({}) is None  # lives in SSM
    assert staging.redis_url({"FLEETKIT_REDIS_URL": "redis://x:1/0"}) == "redis://x:1/0"


@given(low=st.integers(0, 5000), high=st.integers(0, 5000))
def test_min_above_max_is_always_rejected(low: int, high: int) -> None:
    raw = {**tomllib.loads(VALID), "name": "prop"}
    raw["pools"]["workers"].update(min_size=low, max_size=high)
    if low <= high:
        assert Environment.model_validate(raw).pools["workers"].min_size == low
    else:
        with pytest.raises(ValidationError, match="above max_size"):
            Environment.model_validate(raw)
