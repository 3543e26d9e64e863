"""Arrival and completion rates from successive samples of a pool's queue counters (pure).

Each read of Redis gives a pool's backlog (queued + in flight) and two cumulative counters of
ended jobs (`done`, `seconds`). Over a window of samples:

    arrival_rate    = (Δbacklog + Δdone) / Δt   every job that arrived is still there or ended
    completion_rate = Δdone / Δt
    mean_duration_s = Δseconds / Δdone          (the cumulative mean while none ended lately)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fleetkit.autoscaler.model import QueueLoad

__all__ = ["RateWindow", "Sample"]


@dataclass(frozen=True)
class Sample:
    """One read of a pool: time (Redis clock), backlog, and the ended-job counters."""

    t: float
    backlog: int
    done: int
    seconds: float


class RateWindow:
    """The samples of one pool inside `window_s`, turned into a `QueueLoad` on each `add`."""

    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        self.window_s = window_s
        self._samples: deque[Sample] = deque()

    @property
    def samples(self) -> tuple[Sample, ...]:
        """The samples kept, oldest first."""
        return tuple(self._samples)

    def add(self, t: float, queued: int, in_flight: int, done: int, seconds: float) -> QueueLoad:
        """Record a read taken at `t` and return the pool's load with rates over the window."""
        sample = Sample(t, queued + in_flight, done, seconds)
        if self._samples and _went_back(self._samples[-1], sample):
            # Redis flushed or restarted (or the clock stepped back): the old samples measure
            # another history, and differencing across it would give negative rates.
            self._samples.clear()
        self._samples.append(sample)
        self._trim(t)
        oldest = self._samples[0]
        arrival = completion = None
        span = t - oldest.t
        if span > 0:
            ended = done - oldest.done
            completion = ended / span
            # Jobs removed without ending (deleted, cancelled) lower the backlog: never below 0.
            arrival = max(0.0, (sample.backlog - oldest.backlog + ended) / span)
        return QueueLoad(
            queued=queued,
            in_flight=in_flight,
            arrival_rate=arrival,
            completion_rate=completion,
            mean_duration_s=_mean_duration(oldest, sample),
        )

    def _trim(self, now: float) -> None:
        # Keep the newest earlier sample even when it is outside the window, so reads further
        # apart than the window (a slow tick, a Redis outage) still yield a rate.
        start = now - self.window_s
        while len(self._samples) > 2 and self._samples[0].t < start:
            self._samples.popleft()


def _went_back(previous: Sample, sample: Sample) -> bool:
    return sample.t < previous.t or sample.done < previous.done or sample.seconds < previous.seconds


def _mean_duration(oldest: Sample, newest: Sample) -> float | None:
    ended = newest.done - oldest.done
    if ended > 0:
        return max(0.0, (newest.seconds - oldest.seconds) / ended)
    if newest.done > 0:
        return max(0.0, newest.seconds / newest.done)
    return None
