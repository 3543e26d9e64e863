"""Deploy, diff and destroy one environment's stack through change sets.

Every template check runs before the first AWS call, and the region's instance type offerings are
checked before the change set is made, so bad input touches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from fleetkit.core.aws import AwsClients
from fleetkit.core.environment import Environment
from fleetkit.core.errors import AwsError
from fleetkit.infra.blueprints import FleetBlueprint
from fleetkit.infra.blueprints.common import SUBNETS_PARAMETER, TAG_ENV, VPC_PARAMETER, logical_name
from fleetkit.infra.checks import verify_template
from fleetkit.infra.errors import StackBusyError, StackError, StackProtectedError
from fleetkit.infra.instance_types import check_offered
from fleetkit.infra.network import Network, resolve_network
from fleetkit.infra.redis_parameter import redis_parameter_warning
from fleetkit.infra.stacks import (
    ChangeSetPlan,
    CloudFormationStacks,
    StackEvent,
    StackPhase,
    StackState,
)

__all__ = [
    "DeployOutcome",
    "DeployResult",
    "DestroyResult",
    "OperationFailedError",
    "deploy",
    "destroy",
    "diff",
    "stack_parameters",
]

_SUCCESS = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
# What an operator does next, per failed stack state.
_RECOVERY = {
    "ROLLBACK_COMPLETE": "its creation failed and it holds nothing: `infra destroy --env {env}`, "
    "then deploy again",
    "ROLLBACK_FAILED": "its creation failed and the rollback did too: `infra destroy --env {env}` "
    "(resources CloudFormation cannot delete are then listed), then deploy again",
    "DELETE_FAILED": "a delete did not finish: run `infra destroy --env {env}` again",
    "UPDATE_ROLLBACK_FAILED": "an update's rollback failed: `aws cloudformation "
    "continue-update-rollback --stack-name {stack}` (skip resources that cannot roll back), "
    "then deploy again",
    "*": "fix it in the CloudFormation console, then deploy again",
}


class DeployOutcome(StrEnum):
    NO_CHANGES = "no-changes"
    CREATED = "created"
    UPDATED = "updated"
    DECLINED = "declined"


@dataclass
class DeployResult:
    outcome: DeployOutcome
    plan: ChangeSetPlan | None
    state: StackState | None
    notes: list[str] = field(default_factory=list)


@dataclass
class DestroyResult:
    stack: str
    existed: bool
    declined: bool = False
    notes: list[str] = field(default_factory=list)


class OperationFailedError(StackError):
    """A stack operation ended in a failed or rolled-back state."""

    def __init__(self, message: str, state: StackState | None, failed: list[StackEvent]) -> None:
        super().__init__(message)
        self.state = state
        self.failed_events = failed


def stack_parameters(env: Environment, network: Network) -> dict[str, str]:
    """Values for the template's parameters; AMIs are passed so a changed file takes effect."""
    values = {
        VPC_PARAMETER: network.vpc_id,
        SUBNETS_PARAMETER: ",".join(network.subnet_ids),
        "AutoscalerImageId": env.autoscaler.ami,
    }
    for pool, settings in env.pools.items():
        values[f"{logical_name(pool)}ImageId"] = settings.ami
    return dict(sorted(values.items()))


def _stacks(clients: AwsClients) -> CloudFormationStacks:
    return CloudFormationStacks(clients.client("cloudformation"))


def _usable(env: Environment, state: StackState | None) -> bool:
    """Whether the stack exists for an UPDATE; raises when it is in no state to change."""
    if state is None or state.phase is StackPhase.ABSENT:
        return False
    if state.phase is StackPhase.BUSY:
        raise StackBusyError(
            f"stack {state.name} is {state.status}; wait for it to finish (infra status)"
        )
    if state.phase is StackPhase.FAILED:
        hint = _RECOVERY.get(state.status, _RECOVERY["*"]).format(env=env.name, stack=state.name)
        raise StackError(f"stack {state.name} is {state.status}: {hint}")
    return True


def _plan(env: Environment, clients: AwsClients, stacks: CloudFormationStacks) -> ChangeSetPlan:
    blueprint = FleetBlueprint(env)
    body = blueprint.body()
    verify_template(blueprint.to_dict(), body, env)
    exists = _usable(env, stacks.describe(env.stack))
    check_offered(env, clients.client("ec2"))
    network = resolve_network(env, clients.client("ec2"))
    warning = redis_parameter_warning(env, clients.client("ssm"))
    plan = stacks.plan(
        env.stack,
        body=body,
        parameters=stack_parameters(env, network),
        tags={TAG_ENV: env.name},
        exists=exists,
    )
    if warning:
        plan.warnings.append(warning)
    return plan


def diff(env: Environment, clients: AwsClients) -> ChangeSetPlan:
    """What a deploy would change; the change set is deleted again."""
    stacks = _stacks(clients)
    plan = _plan(env, clients, stacks)
    stacks.discard(plan)
    return plan


def deploy(
    env: Environment,
    clients: AwsClients,
    *,
    confirm: Callable[[ChangeSetPlan], bool],
    on_event: Callable[[StackEvent], None],
) -> DeployResult:
    """Create or update the stack; `confirm` sees the plan before anything changes."""
    stacks = _stacks(clients)
    plan = _plan(env, clients, stacks)
    if plan.empty:
        stacks.discard(plan)
        state = stacks.describe(env.stack)
        result = DeployResult(DeployOutcome.NO_CHANGES, plan, state)
        _protect(env, stacks, state, result)
        return result
    if not confirm(plan):
        stacks.discard(plan)
        return DeployResult(DeployOutcome.DECLINED, plan, stacks.describe(env.stack))
    # A new stack already has events (its REVIEW_IN_PROGRESS from the change set): skip those too.
    seen = stacks.event_ids(env.stack)
    stacks.execute(plan)
    state, events = stacks.wait(env.stack, seen=seen, on_event=on_event)
    if state is None or state.status not in _SUCCESS:
        status = state.status if state else "DELETED"
        undone = (
            "nothing of it is left running"
            if plan.change_type == "CREATE"
            else "the previous version was restored"
            if status == "UPDATE_ROLLBACK_COMPLETE"
            else "the stack is in a failed state"
        )
        raise OperationFailedError(
            f"deploy of {env.stack} failed: stack is {status} ({undone})",
            state,
            [e for e in events if e.failed],
        )
    outcome = DeployOutcome.CREATED if plan.change_type == "CREATE" else DeployOutcome.UPDATED
    result = DeployResult(outcome, plan, state)
    _protect(env, stacks, state, result)
    return result


def _protect(
    env: Environment, stacks: CloudFormationStacks, state: StackState | None, result: DeployResult
) -> None:
    """Turn termination protection on when the environment asks; never turn it off."""
    if state is None:
        return
    if env.termination_protection and not state.termination_protection:
        try:
            stacks.set_termination_protection(state.name, True)
        except AwsError as exc:  # refused (StackError), unreachable, or an unreadable answer
            # The stack operation itself succeeded: say so, and what is left to do by hand.
            raise StackError(
                f"stack {state.name} is {state.status} but termination protection is NOT on: "
                f"{exc}; turn it on with: aws cloudformation update-termination-protection "
                f"--enable-termination-protection --stack-name {state.name}"
            ) from exc
        result.notes.append(f"termination protection turned on for {state.name}")
    elif state.termination_protection and not env.termination_protection:
        result.notes.append(
            f"{state.name} has termination protection on, though the environment does not ask "
            "for it; left on"
        )


def destroy(
    env: Environment,
    clients: AwsClients,
    *,
    confirm: Callable[[StackState], bool],
    on_event: Callable[[StackEvent], None],
) -> DestroyResult:
    """Delete the stack unless it is termination-protected."""
    stacks = _stacks(clients)
    state = stacks.describe(env.stack)
    if state is None:
        return DestroyResult(env.stack, existed=False)
    if state.termination_protection:
        raise StackProtectedError(
            f"stack {state.name} has termination protection on; nothing was deleted. Turn it off "
            "first: aws cloudformation update-termination-protection "
            f"--no-enable-termination-protection --stack-name {state.name}"
        )
    if state.phase is StackPhase.BUSY:
        raise StackBusyError(f"stack {state.name} is {state.status}; wait for it to finish")
    if not confirm(state):
        return DestroyResult(env.stack, existed=True, declined=True)
    seen = stacks.event_ids(state.stack_id)
    stacks.delete(state.name)
    final, events = stacks.wait(state.name, seen=seen, on_event=on_event, stack_id=state.stack_id)
    if final is not None:
        raise OperationFailedError(
            f"destroy of {state.name} failed: stack is {final.status}",
            final,
            [e for e in events if e.failed],
        )
    result = DestroyResult(env.stack, existed=True)
    bucket = state.outputs.get("ArtifactBucketName")
    if bucket and not env.artifacts.bucket:
        result.notes.append(
            f"artifact bucket {bucket} was retained (DeletionPolicy Retain); "
            "empty and delete it yourself when it is no longer needed"
        )
    return result
