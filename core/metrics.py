"""What every fleetkit metric shares: its namespace (`fleetkit_…`), whatever Redis key prefix a
deployment or a test uses."""

from __future__ import annotations

__all__ = ["NAMESPACE"]

NAMESPACE = "fleetkit"
