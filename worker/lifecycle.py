"""Completing the terminating lifecycle action once the instance's workers have drained."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from fleetkit.core.tags import TERMINATING_HOOK

__all__ = ["complete_termination"]

log = logging.getLogger(__name__)


def complete_termination(autoscaling: Any, instance_id: str) -> bool:
    """CONTINUE the instance's terminating hook; False when there is nothing to complete."""
    try:
        found = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])
        instances = found.get("AutoScalingInstances", [])
        if not instances:
            log.info("instance %s is in no Auto Scaling group: no lifecycle action", instance_id)
            return False
        group = instances[0]["AutoScalingGroupName"]
        autoscaling.complete_lifecycle_action(
            LifecycleHookName=TERMINATING_HOOK,
            AutoScalingGroupName=group,
            LifecycleActionResult="CONTINUE",
            InstanceId=instance_id,
        )
    except ClientError as exc:
        # No pending action: the hook timed out already, or AWS reclaimed spot without one.
        log.warning("could not complete the lifecycle action of %s: %s", instance_id, exc)
        return False
    except BotoCoreError as exc:
        log.warning("could not reach Auto Scaling for %s: %s", instance_id, exc)
        return False
    log.info("completed %s (CONTINUE) for %s in %s", TERMINATING_HOOK, instance_id, group)
    return True
