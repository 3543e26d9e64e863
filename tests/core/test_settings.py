"""`[pools.<name>.scaling]` and `[autoscaler]`: every bound, in an environment file, gives one
line naming the file and the key; values at a bound are accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetkit.core.environment import load_environment
from fleetkit.core.errors import ConfigError

VALID = """
region = "eu-west-1"
[redis]
url = "redis://127.0.0.1:6379/0"
[pools.workers]
queues = ["default"]
instance_types = ["m5.large"]
ami = "ami-0123456789abcdef0"
max_size = 10
"""

SCALING = "[pools.workers.scaling]\n"
DAEMON = "[autoscaler]\n"

# (id, section, key, value, what the error says); each a value just past one bound.
OUT_OF_BOUNDS = [
    ("drain-zero", SCALING, "target_drain_s", "0", "greater than 0"),
    ("drain-above-a-day", SCALING, "target_drain_s", "86401", "less than or equal to 86400"),
    ("duration-zero", SCALING, "default_job_duration_s", "0", "greater than 0"),
    ("duration-above-a-day", SCALING, "default_job_duration_s", "86401", "86400"),
    ("window-negative", SCALING, "stabilization_window_s", "-1", "greater than or equal to 0"),
    ("window-above-a-day", SCALING, "stabilization_window_s", "86401", "86400"),
    ("grace-negative", SCALING, "fallback_grace_s", "-1", "greater than or equal to 0"),
    ("grace-above-an-hour", SCALING, "fallback_grace_s", "3601", "less than or equal to 3600"),
    ("rate-window-below-5", SCALING, "rate_window_s", "4.9", "greater than or equal to 5"),
    ("rate-window-above-an-hour", SCALING, "rate_window_s", "3601", "3600"),
    ("interval-zero", DAEMON, "interval_s", "0", "greater than 0"),
    ("interval-above-an-hour", DAEMON, "interval_s", "3601", "less than or equal to 3600"),
    ("port-negative", DAEMON, "metrics_port", "-1", "greater than or equal to 0"),
    ("port-above-65535", DAEMON, "metrics_port", "65536", "less than or equal to 65535"),
    ("lock-below-2", DAEMON, "leader_ttl_s", "1.9", "greater than or equal to 2"),
    ("lock-above-an-hour", DAEMON, "leader_ttl_s", "3601", "less than or equal to 3600"),
]

# (id, section, key, value): each exactly at a bound.
AT_BOUNDS = [
    ("drain-a-day", SCALING, "target_drain_s", "86400"),
    ("duration-a-day", SCALING, "default_job_duration_s", "86400"),
    ("window-zero", SCALING, "stabilization_window_s", "0"),
    ("grace-zero", SCALING, "fallback_grace_s", "0"),
    ("grace-an-hour", SCALING, "fallback_grace_s", "3600"),
    ("rate-window-5", SCALING, "rate_window_s", "5"),
    ("rate-window-an-hour", SCALING, "rate_window_s", "3600"),
    ("port-zero", DAEMON, "metrics_port", "0"),
    ("lock-2-tick-1", DAEMON, "leader_ttl_s", "2\ninterval_s = 1"),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "env.toml"
    path.write_text(text)
    return path


def section_key(section: str) -> str:
    return section.strip("[]\n")


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [c[1:] for c in OUT_OF_BOUNDS],
    ids=[c[0] for c in OUT_OF_BOUNDS],
)
def test_a_value_past_a_bound_is_one_line_naming_the_key(
    tmp_path: Path, section: str, key: str, value: str, expected: str
) -> None:
    path = write(tmp_path, f"{VALID}{section}{key} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_environment(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {section_key(section)}.{key}: ")
    assert expected in message and f"(got {value})" in message


@pytest.mark.parametrize(
    ("section", "key", "value"), [c[1:] for c in AT_BOUNDS], ids=[c[0] for c in AT_BOUNDS]
)
def test_a_value_at_a_bound_is_accepted(tmp_path: Path, section: str, key: str, value: str) -> None:
    env = load_environment(str(write(tmp_path, f"{VALID}{section}{key} = {value}\n")))
    settings = env.pools["workers"].scaling if section == SCALING else env.autoscaler
    assert getattr(settings, key) == float(value.split("\n")[0])


LOCK_VS_TICK = [
    # (id, interval_s, leader_ttl_s, accepted)
    ("lock-shorter", 60, 30, False),
    ("lock-equal", 30, 30, False),
    ("lock-longer", 30, 31, True),
    ("defaults", None, None, True),
]


@pytest.mark.parametrize(
    ("interval", "ttl", "accepted"), [c[1:] for c in LOCK_VS_TICK], ids=[c[0] for c in LOCK_VS_TICK]
)
def test_the_leader_lock_must_outlive_a_tick(
    tmp_path: Path, interval: int | None, ttl: int | None, accepted: bool
) -> None:
    lines = [f"{k} = {v}" for k, v in (("interval_s", interval), ("leader_ttl_s", ttl)) if v]
    path = write(tmp_path, VALID + DAEMON + "\n".join(lines) + "\n")
    if accepted:
        settings = load_environment(str(path)).autoscaler
        assert settings.leader_ttl_s > settings.interval_s
        return
    with pytest.raises(ConfigError) as caught:
        load_environment(str(path))
    assert str(caught.value) == (
        f"{path}: autoscaler: leader_ttl_s {ttl} must be longer than interval_s {interval}, "
        "or the lock lapses between ticks"
    )
