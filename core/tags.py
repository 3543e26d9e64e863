"""Names the stack puts on AWS resources and other parts read back: tag keys and values, hook
names. Pure constants, so every package can import them cheaply.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "LAUNCHING_HOOK",
    "ROLE_AUTOSCALER",
    "ROLE_WORKER",
    "TAG_CAPACITY",
    "TAG_ENV",
    "TAG_POOL",
    "TAG_ROLE",
    "TERMINATING_HOOK",
    "Capacity",
]

TAG_ENV = "fleetkit:env"
TAG_POOL = "fleetkit:pool"
TAG_CAPACITY = "fleetkit:capacity"
TAG_ROLE = "fleetkit:role"
ROLE_WORKER = "worker"
ROLE_AUTOSCALER = "autoscaler"

# Hook names are fixed so the worker can complete its own lifecycle action without a lookup.
LAUNCHING_HOOK = "fleetkit-launching"
TERMINATING_HOOK = "fleetkit-terminating"


class Capacity(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"
