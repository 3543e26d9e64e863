"""The EC2 instance metadata service (IMDSv2) as AWS documents it: the paths and headers that
the worker's client (`fleetkit.worker.imds`) reads and the sandbox's server
(`fleetkit.sandbox.imds`) serves, kept here so that neither imports the other.
"""

from __future__ import annotations

__all__ = [
    "AVAILABILITY_ZONE_PATH",
    "IDENTITY_DOCUMENT_PATH",
    "INSTANCE_ID_PATH",
    "INSTANCE_TYPE_PATH",
    "LIFECYCLE_PATH",
    "MAX_TOKEN_TTL_S",
    "META_PREFIX",
    "REBALANCE_PATH",
    "REGION_PATH",
    "SPOT_PATH",
    "SPOT_TERMINATION_TIME_PATH",
    "TOKEN_HEADER",
    "TOKEN_PATH",
    "TTL_HEADER",
]

TOKEN_PATH = "/latest/api/token"
# The token request says how long the token lives; every later GET carries the token.
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL_S = 21600  # six hours, IMDS's limit

META_PREFIX = "/latest/meta-data"
SPOT_PATH = f"{META_PREFIX}/spot/instance-action"
SPOT_TERMINATION_TIME_PATH = f"{META_PREFIX}/spot/termination-time"
REBALANCE_PATH = f"{META_PREFIX}/events/recommendations/rebalance"
LIFECYCLE_PATH = f"{META_PREFIX}/autoscaling/target-lifecycle-state"
INSTANCE_ID_PATH = f"{META_PREFIX}/instance-id"
INSTANCE_TYPE_PATH = f"{META_PREFIX}/instance-type"
REGION_PATH = f"{META_PREFIX}/placement/region"
AVAILABILITY_ZONE_PATH = f"{META_PREFIX}/placement/availability-zone"
IDENTITY_DOCUMENT_PATH = "/latest/dynamic/instance-identity/document"
