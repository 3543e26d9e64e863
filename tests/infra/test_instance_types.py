"""Instance types: known to botocore's EC2 model (offline, `validate`), offered in the region
(`diff`/`deploy`), one line per bad type naming key and value, exit 2, nothing touched."""

from __future__ import annotations

import json
from pathlib import Path

import botocore
import pytest
from click.testing import CliRunner

from fleetkit.core.environment import ENVIRONMENTS_DIR, Environment, load_environment
from fleetkit.infra.checks import lint_template
from fleetkit.infra.cli import main
from fleetkit.infra.instance_types import (
    instance_type_uses,
    known_instance_types,
    unknown_instance_types,
    unoffered_instance_types,
)
from tests.infra.helpers import rendered

NEWER = f"(a type newer than botocore {botocore.__version__} goes in extra_instance_types)"


def local_with(tmp_path: Path, *, types: str, top: str = "", autoscaler: str = "") -> Path:
    """The shipped `local` environment (as local.toml) with other instance types."""
    text = (ENVIRONMENTS_DIR / "local.toml").read_text()
    text = text.replace('instance_types = ["t3.small", "t3a.small"]', f"instance_types = {types}")
    if autoscaler:
        text = text.replace(
            "[pools.workers]\n",
            f'[autoscaler]\ninstance_type = "{autoscaler}"\n\n[pools.workers]\n',
        )
    path = tmp_path / "local.toml"
    path.write_text(top + text)
    return path


def env_with(tmp_path: Path, **changes: str) -> Environment:
    return load_environment(str(local_with(tmp_path, **changes)))


CASES = [
    ("known", {"types": '["t3.small", "t3a.small"]'}, []),
    (
        "pool-typo",
        {"types": '["t3.small", "m7i.lrage"]'},
        [
            "pools.workers.instance_types.1: 'm7i.lrage' is not an EC2 instance type; did you "
            f"mean 'm7i.large'? {NEWER}"
        ],
    ),
    (
        "autoscaler-typo",
        {"types": '["t3.small"]', "autoscaler": "t3.mciro"},
        [
            "autoscaler.instance_type: 't3.mciro' is not an EC2 instance type; did you mean "
            f"'t3.micro'? {NEWER}"
        ],
    ),
    (
        "nothing-close",
        {"types": '["zz9.large"]'},
        [f"pools.workers.instance_types.0: 'zz9.large' is not an EC2 instance type {NEWER}"],
    ),
    (
        "two-bad-two-lines",
        {"types": '["m5.lrage", "t3.small", "c6i.xlrage"]'},
        [
            "pools.workers.instance_types.0: 'm5.lrage' is not an EC2 instance type; did you "
            f"mean 'm5.large'? {NEWER}",
            "pools.workers.instance_types.2: 'c6i.xlrage' is not an EC2 instance type; did you "
            f"mean 'c6i.xlarge'? {NEWER}",
        ],
    ),
    (
        "override-accepts-newer-types",
        {
            "types": '["t3.small", "m9x.large"]',
            "autoscaler": "m9x.medium",
            "top": 'extra_instance_types = ["m9x.large", "m9x.medium"]\n',
        },
        [],
    ),
]


@pytest.mark.parametrize(("changes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_unknown_instance_types(
    tmp_path: Path, changes: dict[str, str], expected: list[str]
) -> None:
    env = env_with(tmp_path, **changes)
    assert unknown_instance_types(env, known_instance_types()) == [
        f"{env.source}: {line}" for line in expected
    ]


def test_every_type_the_stack_launches_is_checked(tmp_path: Path) -> None:
    env = env_with(tmp_path, types='["t3.small", "t3a.small"]', autoscaler="t3.nano")
    assert [(u.key, u.name) for u in instance_type_uses(env)] == [
        ("autoscaler.instance_type", "t3.nano"),
        ("pools.workers.instance_types.0", "t3.small"),
        ("pools.workers.instance_types.1", "t3a.small"),
    ]


def test_types_the_region_does_not_offer(tmp_path: Path) -> None:
    env = env_with(tmp_path, types='["t3.small", "cc2.8xlarge"]')
    assert unoffered_instance_types(env, {"t3.small", "t3.micro"}) == [
        f"{env.source}: pools.workers.instance_types.1: 'cc2.8xlarge' is not offered in region "
        "us-east-1"
    ]
    assert unoffered_instance_types(env, {"t3.small", "t3.micro", "cc2.8xlarge"}) == []


def test_validate_refuses_a_typo_in_one_line(tmp_path: Path) -> None:
    path = local_with(tmp_path, types='["t3.small", "m7i.lrage"]')

    result = CliRunner().invoke(main, ["validate", "--env", str(path)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"infra: error: {path}: pools.workers.instance_types.1: 'm7i.lrage' is not an EC2 "
        f"instance type; did you mean 'm7i.large'? {NEWER}"
    ]


def test_validate_accepts_overridden_types_in_overrides_and_launch_templates(
    tmp_path: Path,
) -> None:
    # cfn-lint checks the autoscaler's launch template against its own list of types (E3628):
    # the override holds there too.
    path = local_with(
        tmp_path,
        types='["t3.small", "m9x.large"]',
        autoscaler="m9x.medium",
        top='extra_instance_types = ["m9x.large", "m9x.medium"]\n',
    )

    result = CliRunner().invoke(main, ["validate", "--env", str(path)])

    assert result.exit_code == 0, result.output
    assert "template passes our rules and cfn-lint" in result.stdout


def test_cfn_lint_instance_type_finding_is_short_and_overridable() -> None:
    env = load_environment("local")
    document = rendered(env)
    data = document["Resources"]["AutoscalerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    data["InstanceType"] = "m9x.medium"
    body = json.dumps(document)

    findings = lint_template(body, env.region)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.startswith(
        "E3628 Resources/AutoscalerLaunchTemplate/Properties/LaunchTemplateData/InstanceType: "
        "'m9x.medium' is not one of ["
    )
    assert "'t3.small'" not in finding and " values] in 'us-east-1'" in finding
    assert lint_template(body, env.region, extra_instance_types=["m9x.medium"]) == []
