"""Pointer-only user data: which environment, pool and role an instance belongs to, and where
its artifacts live. User data is readable by anything on the instance: pointers, never secrets.
"""

from __future__ import annotations

from troposphere import AWSHelperFn, Base64, Sub

__all__ = ["pointer_user_data"]

# ${Bucket} is substituted by CloudFormation; the rest is filled in at render time.
_SCRIPT = """#!/bin/bash
# fleetkit instance pointer: the bootstrap reads /etc/fleetkit/instance.env.
set -euo pipefail
install -d -m 0755 /etc/fleetkit
cat > /etc/fleetkit/instance.env <<'FLEETKIT'
FLEETKIT_ENV={env}
FLEETKIT_POOL={pool}
FLEETKIT_ROLE={role}
FLEETKIT_STACK={stack}
FLEETKIT_REGION={region}
FLEETKIT_ARTIFACT_BUCKET=${{Bucket}}
FLEETKIT_ARTIFACT_PREFIX={prefix}
FLEETKIT
"""


def pointer_user_data(
    *, env: str, pool: str, role: str, stack: str, region: str, bucket: object, prefix: str
) -> AWSHelperFn:
    """Base64 user data for one pool's (or the autoscaler's) launch template."""
    script = _SCRIPT.format(
        env=env, pool=pool, role=role, stack=stack, region=region, prefix=prefix
    )
    return Base64(Sub(script, Bucket=bucket))
