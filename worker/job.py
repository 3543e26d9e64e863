"""`FleetJob`: the rq Job that fleetkit's workers run (producers enqueue plain rq jobs)."""

from __future__ import annotations

from typing import Any

from rq.job import Job

__all__ = ["FleetJob"]


class FleetJob(Job):
    """An rq Job that knows when it is being handed back, so no failure callback fires."""

    handed_back = False
    # The job's hash as last read from Redis: a spare horse is handed this copy, as rq's fork
    # hands its horse the parent's job object.
    fleet_stored: dict[bytes, bytes] | None = None

    def restore(self, raw_data: Any) -> Any:
        self.fleet_stored = raw_data
        return super().restore(raw_data)

    def execute_failure_callback(self, death_penalty_class: Any, *exc_info: Any) -> None:
        if self.handed_back:
            return
        super().execute_failure_callback(death_penalty_class, *exc_info)
