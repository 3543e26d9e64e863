"""CloudFormation adapter: stack state, change sets, events and waits. All boto3 calls to
CloudFormation live here; callers get our dataclasses and errors.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from fleetkit.core.aws import aws_errors, error_code
from fleetkit.infra.changes import PropertyChange, detail_changes, template_changes
from fleetkit.infra.errors import InfraError, StackBusyError, StackError

__all__ = [
    "Change",
    "ChangeSetPlan",
    "CloudFormationStacks",
    "StackEvent",
    "StackPhase",
    "StackState",
    "phase_of",
]

# Asks DescribeChangeSet for each changed property's before and after values.
_PROPERTY_VALUES = "IncludePropertyValues"
# Phrases AWS uses when a change set would change nothing (moto instead returns no Changes).
_NO_CHANGE_REASONS = ("didn't contain changes", "No updates are to be performed")


class StackPhase(StrEnum):
    ABSENT = "absent"  # no stack, or one never executed (REVIEW_IN_PROGRESS)
    STABLE = "stable"  # *_COMPLETE: can be updated
    BUSY = "busy"  # an operation is under way
    FAILED = "failed"  # needs a human: ROLLBACK_COMPLETE, *_FAILED


def phase_of(status: str | None) -> StackPhase:
    """Classify a CloudFormation stack status."""
    if status in (None, "DELETE_COMPLETE", "REVIEW_IN_PROGRESS"):
        return StackPhase.ABSENT
    assert status is not None
    if status.endswith("_IN_PROGRESS"):
        return StackPhase.BUSY
    if status == "ROLLBACK_COMPLETE" or status.endswith("_FAILED"):
        return StackPhase.FAILED
    return StackPhase.STABLE


@dataclass(frozen=True)
class StackState:
    name: str
    status: str
    reason: str | None
    outputs: dict[str, str]
    termination_protection: bool
    stack_id: str

    @property
    def phase(self) -> StackPhase:
        return phase_of(self.status)


@dataclass(frozen=True)
class Change:
    action: str  # Add | Modify | Remove
    logical_id: str
    resource_type: str
    replacement: str  # True | False | Conditional | "" when AWS does not say (moto)
    # What a Modify changes: the change set's details, else the deployed template against the new.
    properties: tuple[PropertyChange, ...] = ()


@dataclass
class ChangeSetPlan:
    stack: str
    name: str
    change_type: str  # CREATE | UPDATE
    changes: list[Change] = field(default_factory=list)
    # What the operator should know before executing it, beyond the template (one line each).
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes


@dataclass(frozen=True)
class StackEvent:
    event_id: str
    timestamp: datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str

    @property
    def failed(self) -> bool:
        return self.status.endswith("_FAILED")


def _document(body: str) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


class CloudFormationStacks:
    """Stack operations over one boto3 CloudFormation client."""

    def __init__(
        self,
        client: Any,
        *,
        poll_seconds: float = 3.0,
        timeout_seconds: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep

    def describe(self, stack: str) -> StackState | None:
        with aws_errors(f"describing stack {stack}", error=StackError):
            try:
                found = self.client.describe_stacks(StackName=stack)["Stacks"]
            except ClientError as exc:
                if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
                    return None
                raise
        if not found:
            return None
        raw = found[0]
        if raw["StackStatus"] == "DELETE_COMPLETE":
            return None
        return StackState(
            name=raw["StackName"],
            status=raw["StackStatus"],
            reason=raw.get("StackStatusReason"),
            outputs={o["OutputKey"]: o["OutputValue"] for o in raw.get("Outputs", [])},
            termination_protection=bool(raw.get("EnableTerminationProtection", False)),
            stack_id=raw["StackId"],
        )

    def plan(
        self,
        stack: str,
        *,
        body: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        exists: bool,
    ) -> ChangeSetPlan:
        """Create a change set and wait for it; an empty plan means nothing would change."""
        plan = ChangeSetPlan(
            stack=stack,
            name=f"fleetkit-{int(time.time() * 1000)}",
            change_type="UPDATE" if exists else "CREATE",
        )
        with aws_errors(f"creating a change set for {stack}", error=StackError):
            self.client.create_change_set(
                StackName=stack,
                ChangeSetName=plan.name,
                ChangeSetType=plan.change_type,
                TemplateBody=body,
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
                ],
                Capabilities=["CAPABILITY_IAM"],
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
        try:
            described = self._wait_for_change_set(plan)
            status, reason = described["Status"], described.get("StatusReason") or ""
            if status == "FAILED" and any(p in reason for p in _NO_CHANGE_REASONS):
                return plan
            if status == "FAILED":
                raise StackError(f"change set for {stack} failed: {reason}")
            plan.changes = list(self._changes(plan))
            if any(c.action == "Modify" and not c.properties for c in plan.changes):
                plan.changes = self._from_templates(plan, body)
        except BaseException:
            # Never leave a change set (or an empty REVIEW_IN_PROGRESS stack) behind.
            self._discard_quietly(plan)
            raise
        return plan

    def _discard_quietly(self, plan: ChangeSetPlan) -> None:
        # The original error is the one worth reporting.
        with contextlib.suppress(InfraError):
            self.discard(plan)

    def _wait_for_change_set(self, plan: ChangeSetPlan) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            with aws_errors(f"describing change set {plan.name}", error=StackError):
                described: dict[str, Any] = self.client.describe_change_set(
                    StackName=plan.stack, ChangeSetName=plan.name
                )
            if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
                return described
            if time.monotonic() > deadline:
                raise StackError(f"change set {plan.name} still {described['Status']}")
            self._sleep(min(self.poll_seconds, 1.0))

    def _changes(self, plan: ChangeSetPlan) -> Iterable[Change]:
        values = {_PROPERTY_VALUES: True} if self._knows(_PROPERTY_VALUES) else {}
        pages = self.client.get_paginator("describe_change_set").paginate(
            StackName=plan.stack, ChangeSetName=plan.name, **values
        )
        with aws_errors(f"describing change set {plan.name}", error=StackError):
            for page in pages:
                for entry in page.get("Changes", []):
                    rc = entry.get("ResourceChange", {})
                    yield Change(
                        action=rc.get("Action", "?"),
                        logical_id=rc.get("LogicalResourceId", "?"),
                        resource_type=rc.get("ResourceType", "?"),
                        replacement=str(rc.get("Replacement", "")),
                        properties=tuple(detail_changes(rc.get("Details", []))),
                    )

    def _knows(self, parameter: str) -> bool:
        """Whether the installed botocore's DescribeChangeSet takes `parameter` (newer ones do)."""
        operation = self.client.meta.service_model.operation_model("DescribeChangeSet")
        return parameter in operation.input_shape.members

    def _from_templates(self, plan: ChangeSetPlan, body: str) -> list[Change]:
        """Each Modify the change set left without details, compared property by property
        between the deployed template and the new one.

        Showing them is a courtesy: a deployed template that cannot be read (a role without
        cloudformation:GetTemplate) is a warning on the plan, never a failed diff or deploy.
        """
        try:
            deployed = self.template(plan.stack)
        except StackError as exc:
            plan.warnings.append(f"what each Modify changes is not shown: {exc}")
            return plan.changes
        new = _document(body)
        if deployed is None or new is None:
            return plan.changes
        return [
            replace(c, properties=tuple(template_changes(deployed, new, c.logical_id)))
            if c.action == "Modify" and not c.properties
            else c
            for c in plan.changes
        ]

    def template(self, stack: str) -> dict[str, Any] | None:
        """The deployed template; None when it is not JSON (we deploy JSON; botocore decodes it)."""
        with aws_errors(f"reading the template of {stack}", error=StackError):
            body = self.client.get_template(StackName=stack)["TemplateBody"]
        return body if isinstance(body, dict) else _document(body)

    def discard(self, plan: ChangeSetPlan) -> None:
        """Delete a change set, and the empty REVIEW_IN_PROGRESS stack a declined create leaves."""
        with aws_errors(f"deleting change set {plan.name}", error=StackError):
            self.client.delete_change_set(StackName=plan.stack, ChangeSetName=plan.name)
            if plan.change_type == "CREATE":
                state = self.describe(plan.stack)
                if state is not None and state.status == "REVIEW_IN_PROGRESS":
                    self.client.delete_stack(StackName=plan.stack)

    def execute(self, plan: ChangeSetPlan) -> None:
        with aws_errors(f"executing change set {plan.name}", error=StackError):
            self.client.execute_change_set(StackName=plan.stack, ChangeSetName=plan.name)

    def delete(self, stack: str) -> None:
        with aws_errors(f"deleting stack {stack}", error=StackError):
            self.client.delete_stack(StackName=stack)

    def set_termination_protection(self, stack: str, enabled: bool) -> None:
        with aws_errors(f"setting termination protection on {stack}", error=StackError):
            self.client.update_termination_protection(
                StackName=stack, EnableTerminationProtection=enabled
            )

    def event_ids(self, stack: str) -> set[str]:
        """Ids of the events already recorded, so a wait shows only what happens next."""
        return {e.event_id for e in self._events(stack)}

    def _events(self, stack: str) -> list[StackEvent]:
        events: list[StackEvent] = []
        with aws_errors(f"reading events of {stack}", error=StackError):
            try:
                pages = self.client.get_paginator("describe_stack_events").paginate(StackName=stack)
                for page in pages:
                    for raw in page["StackEvents"]:
                        events.append(
                            StackEvent(
                                event_id=raw["EventId"],
                                timestamp=raw["Timestamp"],
                                logical_id=raw.get("LogicalResourceId", ""),
                                resource_type=raw.get("ResourceType", ""),
                                status=raw.get("ResourceStatus", ""),
                                reason=raw.get("ResourceStatusReason") or "",
                            )
                        )
            except ClientError as exc:
                if "does not exist" in str(exc):
                    return []
                raise
        return sorted(events, key=lambda e: e.timestamp)

    def wait(
        self,
        stack: str,
        *,
        seen: set[str],
        on_event: Callable[[StackEvent], None],
        stack_id: str | None = None,
    ) -> tuple[StackState | None, list[StackEvent]]:
        """Poll until the stack leaves *_IN_PROGRESS; report each new event once.

        Returns the final state (None once deleted) and every new event. A deleted stack is only
        reachable by its id, so deletes pass `stack_id`.
        """
        deadline = time.monotonic() + self.timeout_seconds
        target = stack_id or stack
        new_events: list[StackEvent] = []
        while True:
            state = self.describe(target)
            for event in self._events(target):
                if event.event_id not in seen:
                    seen.add(event.event_id)
                    new_events.append(event)
                    on_event(event)
            if state is None or state.phase is not StackPhase.BUSY:
                return state, new_events
            if time.monotonic() > deadline:
                raise StackBusyError(
                    f"stack {stack} still {state.status} after {self.timeout_seconds:.0f} s; "
                    "it goes on in CloudFormation: check `infra status`"
                )
            self._sleep(self.poll_seconds)

    def physical_ids(self, stack: str, resource_type: str) -> dict[str, str]:
        """Logical id → physical id of the stack's resources of one type.

        Group names are read here every time: a replaced group gets a new name, and moto renames
        groups on any update.
        """
        found: dict[str, str] = {}
        with aws_errors(f"listing resources of {stack}", error=StackError):
            for page in self.client.get_paginator("list_stack_resources").paginate(StackName=stack):
                for summary in page["StackResourceSummaries"]:
                    if summary["ResourceType"] == resource_type and summary.get(
                        "PhysicalResourceId"
                    ):
                        found[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
        return found
