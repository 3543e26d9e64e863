"""Rich renderings of plans, events and fleet status for the `infra` CLI.

Every value from AWS or an environment file is escaped: rich reads `[a-z…]` as markup, so an
unescaped `[workers]` in a status reason would vanish from the line.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleetkit.infra.changes import PropertyChange, show
from fleetkit.infra.stacks import ChangeSetPlan, StackEvent
from fleetkit.infra.status import FleetStatus

__all__ = [
    "event_line",
    "outputs_table",
    "plan_table",
    "plan_title",
    "property_line",
    "status_tables",
]

_ACTION_STYLE = {"Add": "green", "Modify": "yellow", "Remove": "red"}


def plan_title(plan: ChangeSetPlan) -> str:
    count = len(plan.changes)
    return f"{plan.stack}: {plan.change_type.lower()} ({count} change{'' if count == 1 else 's'})"


def plan_table(plan: ChangeSetPlan) -> Table:
    table = Table(title=escape(plan_title(plan)))
    for column in ("action", "resource", "type", "replacement"):
        table.add_column(column)
    table.add_column("what changes", overflow="fold")
    for change in plan.changes:
        style = _ACTION_STYLE.get(change.action, "")
        action = escape(change.action)
        replacement = escape(change.replacement or "-")
        table.add_row(
            f"[{style}]{action}[/]" if style else action,
            escape(change.logical_id),
            escape(change.resource_type),
            "[bold red]True[/]" if change.replacement == "True" else replacement,
            "\n".join(escape(property_line(p)) for p in change.properties),
        )
    return table


def property_line(change: PropertyChange) -> str:
    """`MaxSize 500 → 400`."""
    return f"{change.path} {show(change.before)} → {show(change.after)}"


def event_line(event: StackEvent) -> str:
    style = "red" if event.failed else "green" if event.status.endswith("COMPLETE") else "cyan"
    reason = f" — {escape(event.reason)}" if event.reason else ""
    return (
        f"{event.timestamp:%H:%M:%S} [{style}]{escape(f'{event.status:<28}')}[/] "
        f"{escape(event.logical_id)} ({escape(event.resource_type)}){reason}"
    )


def outputs_table(outputs: dict[str, str]) -> Table:
    table = Table(title="outputs")
    table.add_column("key")
    table.add_column("value")
    for key, value in sorted(outputs.items()):
        table.add_row(escape(key), escape(value))
    return table


def status_tables(console: Console, status: FleetStatus) -> None:
    protection = "on" if status.termination_protection else "off"
    console.print(
        f"[bold]{escape(status.stack)}[/] {escape(status.status)}"
        + (f" ({escape(status.reason)})" if status.reason else "")
        + f", termination protection {protection}"
    )
    table = Table(title="groups")
    table.add_column("pool", no_wrap=True)
    table.add_column("capacity", no_wrap=True)
    for column in ("desired", "in service", "pending", "min", "max"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("group", overflow="fold")
    for group in status.groups:
        table.add_row(
            escape(group.pool),
            escape(group.capacity),
            str(group.desired),
            str(group.in_service),
            str(group.pending),
            str(group.min_size),
            str(group.max_size),
            escape(group.name),
        )
    console.print(table)
    if status.outputs:
        console.print(outputs_table(status.outputs))
