"""`infra`: render, diff, deploy, destroy and inspect one environment's stack."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import TextIO

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fleetkit.core.aws import AwsClients
from fleetkit.core.cli import OneLineErrors
from fleetkit.core.environment import Environment, load_environment
from fleetkit.core.errors import FleetkitError
from fleetkit.infra.blueprints import FleetBlueprint
from fleetkit.infra.checks import verify_template
from fleetkit.infra.deploy import DeployOutcome, OperationFailedError, deploy, destroy, diff
from fleetkit.infra.stacks import ChangeSetPlan, StackEvent, StackState
from fleetkit.infra.status import read_status
from fleetkit.infra.views import event_line, plan_table, status_tables


def _width(stream: TextIO) -> int | None:
    """Terminals report their width; piped output (logs, CI, make) gets room for group names."""
    return None if stream.isatty() else int(os.environ.get("COLUMNS") or 0) or 160


console = Console(highlight=False, width=_width(sys.stdout))
errors = Console(stderr=True, highlight=False, width=_width(sys.stderr))


class InfraCommands(OneLineErrors):
    """One-line errors; a failed stack operation shows its failed events first."""

    def report(self, exc: FleetkitError) -> None:
        if isinstance(exc, OperationFailedError) and exc.failed_events:
            table = Table(title="failed events")
            table.add_column("resource")
            table.add_column("status")
            table.add_column("reason")
            for event in exc.failed_events:
                table.add_row(escape(event.logical_id), escape(event.status), escape(event.reason))
            errors.print(table)


env_option = click.option(
    "--env",
    "env_ref",
    required=True,
    metavar="ENV",
    help="Environment name (infra/environments/ENV.toml) or path to a .toml file.",
)
yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _load(env_ref: str) -> Environment:
    return load_environment(env_ref)


def _print_event(event: StackEvent) -> None:
    console.print(event_line(event))


def _warn(plan: ChangeSetPlan) -> None:
    """Each of the plan's warnings as one literal line on stderr; the exit code is unchanged."""
    for warning in plan.warnings:
        line = Text.assemble("infra: ", ("warning:", "yellow"), " ", warning)
        errors.print(line, soft_wrap=True)  # one line, however wide the terminal


@click.group(cls=InfraCommands, name="infra")
@click.version_option(package_name="fleetkit")
def main() -> None:
    """Deploy and inspect fleetkit's CloudFormation stack for one environment."""


@main.command()
@env_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "yaml"]),
    default="json",
    show_default=True,
    help="Template format: JSON (what `deploy` sends) or YAML (easier to read).",
)
def render(env_ref: str, fmt: str) -> None:
    """Print the CloudFormation template to stdout."""
    env = _load(env_ref)
    click.echo(FleetBlueprint(env).render(fmt), nl=False)


@main.command()
@env_option
def validate(env_ref: str) -> None:
    """Run our template rules and cfn-lint; no AWS calls."""
    env = _load(env_ref)
    blueprint = FleetBlueprint(env)
    verify_template(blueprint.to_dict(), blueprint.body(), env)
    console.print(f"{env.stack}: template passes our rules and cfn-lint")


@main.command("diff")
@env_option
@json_option
def diff_command(env_ref: str, as_json: bool) -> None:
    """Show what a deploy would change (the change set is deleted again)."""
    env = _load(env_ref)
    plan = diff(env, AwsClients.for_environment(env))
    _warn(plan)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "stack": plan.stack,
                    "change_type": plan.change_type,
                    "changes": [asdict(c) for c in plan.changes],
                    "warnings": plan.warnings,
                },
                indent=2,
            )
        )
    elif plan.empty:
        console.print(f"{plan.stack}: no changes")
    else:
        console.print(plan_table(plan))


@main.command("deploy")
@env_option
@yes_option
def deploy_command(env_ref: str, yes: bool) -> None:
    """Create or update the stack through a change set."""
    env = _load(env_ref)

    def confirm(plan: ChangeSetPlan) -> bool:
        _warn(plan)
        console.print(plan_table(plan))
        if yes:
            return True
        try:
            return click.confirm(f"Execute this change set on {plan.stack}?", default=False)
        except click.Abort:
            return False

    console.print(f"deploying [bold]{escape(env.stack)}[/] ({escape(env.name)}, {env.region})")
    clients = AwsClients.for_environment(env)
    result = deploy(env, clients, confirm=confirm, on_event=_print_event)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if result.outcome is DeployOutcome.NO_CHANGES:
        if result.plan is not None:
            _warn(result.plan)  # no confirmation showed them
        console.print(f"{env.stack}: no changes")
        return
    if result.outcome is DeployOutcome.DECLINED:
        errors.print(f"{env.stack}: not deployed; the change set was deleted")
        sys.exit(1)
    assert result.state is not None
    console.print(f"[green]{escape(env.stack)}: {escape(result.state.status)}[/]")
    fleet = read_status(env, clients)
    if fleet is not None:
        status_tables(console, fleet)


@main.command("destroy")
@env_option
@yes_option
def destroy_command(env_ref: str, yes: bool) -> None:
    """Delete the stack (refused when termination protection is on)."""
    env = _load(env_ref)

    def confirm(state: StackState) -> bool:
        if yes:
            return True
        try:
            return click.confirm(
                f"Delete stack {state.name} ({state.status}) and every instance in it?",
                default=False,
            )
        except click.Abort:
            return False

    result = destroy(env, AwsClients.for_environment(env), confirm=confirm, on_event=_print_event)
    if not result.existed:
        console.print(f"{result.stack}: no such stack, nothing to destroy")
    elif result.declined:
        errors.print(f"{result.stack}: not destroyed")
        sys.exit(1)
    else:
        console.print(f"[green]{escape(result.stack)}: deleted[/]")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


@main.command()
@env_option
@json_option
def status(env_ref: str, as_json: bool) -> None:
    """Stack state, outputs, and per pool and group: desired, in service, pending."""
    env = _load(env_ref)
    fleet = read_status(env, AwsClients.for_environment(env))
    if fleet is None:
        if as_json:
            click.echo(json.dumps({"stack": env.stack, "status": "ABSENT", "groups": []}))
        else:
            console.print(f"{env.stack}: not deployed")
        sys.exit(3)
    if as_json:
        click.echo(json.dumps(fleet.as_json(), indent=2))
    else:
        status_tables(console, fleet)
