"""What `infra` prints for bad input: a line per problem, `infra: error: <message>`, the message
exactly as written (a value in [brackets] is no markup), exit 2, and nothing else."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import fleetkit.infra.cli
from fleetkit.core.environment import ENVIRONMENTS_DIR
from fleetkit.infra.cli import InfraCommands, main
from fleetkit.infra.deploy import OperationFailedError
from fleetkit.infra.stacks import Change, ChangeSetPlan, StackEvent
from fleetkit.infra.status import FleetStatus, GroupStatus
from fleetkit.infra.views import event_line, plan_table, status_tables

LOCAL = (ENVIRONMENTS_DIR / "local.toml").read_text()


def local_file(tmp_path: Path, name: str = "local.toml", **replacements: str) -> Path:
    text = LOCAL
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


def validate(path: Path) -> list[str]:
    """`infra validate` on `path`, which must fail with exit 2 and print only error lines."""
    result = CliRunner().invoke(main, ["validate", "--env", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(line.startswith("infra: error: ") for line in lines), lines
    return [line.removeprefix("infra: error: ") for line in lines]


def test_an_unknown_region_is_one_line(tmp_path: Path) -> None:
    # It used to pass the file and crash in cfn-lint, which knows no such region.
    path = local_file(tmp_path, **{'region = "us-east-1"': 'region = "xx-fake-9"'})
    assert validate(path) == [f"{path}: region: 'xx-fake-9' is not an AWS region"]


def test_a_near_miss_region_gets_a_hint(tmp_path: Path) -> None:
    path = local_file(tmp_path, **{'region = "us-east-1"': 'region = "us-east-7"'})
    [line] = validate(path)
    assert line.startswith(f"{path}: region: 'us-east-7' is not an AWS region (did you mean 'us-")


def test_an_ssh_cidr_with_host_bits_names_the_network(tmp_path: Path) -> None:
    path = local_file(
        tmp_path, **{'subnets = "default"': 'subnets = "default"\nssh_cidr = "10.0.0.5/16"'}
    )
    assert validate(path) == [
        f"{path}: network.ssh_cidr: '10.0.0.5/16' has host bits set: the network is 10.0.0.0/16"
    ]


def test_a_bad_instance_type_is_shown_literally(tmp_path: Path) -> None:
    path = local_file(
        tmp_path, **{'instance_types = ["t3.small", "t3a.small"]': 'instance_types = ["banana"]'}
    )
    assert validate(path) == [
        f"{path}: pools.workers.instance_types.0: must be an EC2 instance type such as "
        "m7i.large (got 'banana')"
    ]


def test_values_in_brackets_are_not_markup(tmp_path: Path) -> None:
    path = local_file(
        tmp_path,
        **{'instance_types = ["t3.small", "t3a.small"]': 'instance_types = ["[bold]x", "[a-z]"]'},
    )
    assert validate(path) == [
        f"{path}: pools.workers.instance_types.{i}: must be an EC2 instance type such as "
        f"m7i.large (got '{value}')"
        for i, value in enumerate(["[bold]x", "[a-z]"])
    ]


def test_a_name_from_the_file_name_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    path = local_file(tmp_path, "unknown_x.toml")
    assert validate(path) == [
        f"{path}: name: environment name 'unknown_x' (taken from the file name unknown_x.toml) "
        "must be 1 to 24 lowercase letters, digits or '-', starting with a letter (it becomes "
        "the stack name, tags and Redis keys): rename the file (to unknown-x.toml, say) or set "
        'name = "unknown-x" in it'
    ]


def test_a_name_set_in_the_file_is_not_blamed_on_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "fine.toml"
    path.write_text('name = "Not_OK"\n' + LOCAL)
    [line] = validate(path)
    assert "file name" not in line
    assert line.endswith('set name = "not-ok", say')


def test_every_problem_is_a_line_of_its_own(tmp_path: Path) -> None:
    path = local_file(
        tmp_path,
        **{
            'subnets = "default"': 'subnets = "default"\nssh_cidr = "10.0.0.5/16"',
            "max_size = 20": "max_size = -3",
        },
    )
    lines = validate(path)
    assert lines == [
        f"{path}: network.ssh_cidr: '10.0.0.5/16' has host bits set: the network is 10.0.0.0/16",
        f"{path}: pools.workers.max_size: Input should be greater than or equal to 0 (got -3)",
    ]
    assert not any("more)" in line for line in lines)


# --- values from AWS in rich output ------------------------------------------------------------


def recording() -> Console:
    return Console(width=300, record=True, highlight=False, file=io.StringIO())


def rendered(*renderables: object) -> str:
    console = recording()
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def test_plan_values_are_shown_literally() -> None:
    plan = ChangeSetPlan(
        "fleetkit-local",
        "cs",
        "UPDATE",
        [Change("Modify", "WorkersSpotGroup", "AWS::AutoScaling::AutoScalingGroup", "[maybe]")],
    )
    text = rendered(plan_table(plan))
    assert "[maybe]" in text


def test_event_and_status_reasons_are_shown_literally() -> None:
    event = StackEvent(
        "e1",
        datetime(2025, 3, 1, tzinfo=UTC),
        "WorkersSpotGroup",
        "AWS::AutoScaling::AutoScalingGroup",
        "UPDATE_FAILED",
        "[workers] instance type [m7i.lrage] is not supported",
    )
    assert "[workers] instance type [m7i.lrage] is not supported" in rendered(event_line(event))

    status = FleetStatus(
        stack="fleetkit-local",
        status="UPDATE_ROLLBACK_COMPLETE",
        reason="The following resource(s) failed to update: [workers].",
        termination_protection=False,
        outputs={"note": "[red]literal[/]"},
        groups=[
            GroupStatus("G", "[grp]-1", "[pool]", "worker", "spot", 0, 0, 1, 0, 0, 0),
        ],
    )
    console = recording()
    status_tables(console, status)
    text = console.export_text()
    for literal in ("failed to update: [workers].", "[red]literal[/]", "[grp]-1", "[pool]"):
        assert literal in text, literal


@pytest.mark.parametrize("reason", ["[bold]gone[/bold]", "[a-z] in a pattern"])
def test_failed_events_table_is_literal(reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    event = StackEvent("e", datetime(2025, 3, 1, tzinfo=UTC), "[lid]", "T", "CREATE_FAILED", reason)
    console = recording()
    monkeypatch.setattr(fleetkit.infra.cli, "errors", console)

    InfraCommands(name="infra").report(OperationFailedError("failed", None, [event]))

    text = console.export_text()
    assert reason in text and "[lid]" in text


def test_render_format_has_help() -> None:
    shown = " ".join(CliRunner().invoke(main, ["render", "--help"]).output.split())
    assert "--format [json|yaml] Template format: JSON (what `deploy` sends) or YAML" in shown
    assert "[default: json]" in shown


def test_each_template_rule_broken_is_a_line_of_its_own(tmp_path: Path) -> None:
    from fleetkit.infra.errors import LintError, TemplateError

    for error in (TemplateError(["a: one", "b: two"]), LintError(["E1 x: one", "W2 y: two"])):
        assert str(error).splitlines() == error.problems
