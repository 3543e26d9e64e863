"""Manual holds: `autoscaler scale POOL N` keeps the pool at N or more until the hold ends.

A hold is one JSON value per pool with a Redis expiry equal to its duration, so it ends by
itself even if nobody runs `release`; the daemon reads it in its one round trip per tick.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable

from redis import Redis

from fleetkit.autoscaler.errors import SourceUnavailable
from fleetkit.autoscaler.model import Hold
from fleetkit.core.errors import UsageError
from fleetkit.core.redis_io import redis_errors
from fleetkit.core.schema import KEYS

__all__ = ["DEFAULT_HOLD_S", "MAX_HOLD_S", "HoldStore", "parse_duration", "parse_hold"]

log = logging.getLogger(__name__)

DEFAULT_HOLD_S = 30 * 60
# A burst outlasting a week is a new floor: that belongs in the pool's min_size, where it is
# reviewed and survives a Redis flush. The cap also catches unit slips (`--hold 30d`).
MAX_HOLD_S = 7 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
# Holds live beside the queues: Redis failing here is the daemon's source failing.
_ERROR = SourceUnavailable


def parse_duration(text: str) -> float:
    """`90`, `90s`, `30m`, `2h`, `1h30m`, `0` → seconds, at most 7 days; else a UsageError."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise UsageError(f"--hold {text!r}: not a duration (examples: 0, 90s, 30m, 2h, 1h30m)")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds > MAX_HOLD_S:
        raise UsageError(
            f"--hold {text!r}: at most 7d; for a lasting floor raise the pool's min_size"
        )
    return seconds


def parse_hold(raw: bytes | str) -> Hold:
    """`{"count": int, "until": float | null}` → Hold; ValueError when it is anything else."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {data!r}")
    count, until = data.get("count"), data.get("until")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count {count!r} is not a non-negative integer")
    if until is not None and (isinstance(until, bool) or not isinstance(until, int | float)):
        raise ValueError(f"until {until!r} is neither a number nor null")
    return Hold(count=count, until=None if until is None else float(until))


class HoldStore:
    def __init__(
        self, connection: Redis, env: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.connection = connection
        self.env = env
        self.clock = clock

    def get(self, pool: str) -> Hold | None:
        key = KEYS.hold(self.env, pool)
        with redis_errors(f"cannot read the hold of pool {pool} from Redis", error=_ERROR):
            raw = self.connection.get(key)
        if raw is None:
            return None
        try:
            return parse_hold(raw)
        except ValueError as exc:
            log.warning("ignoring the hold of pool %s at %s: %s", pool, key, exc)
            return None

    def set(self, pool: str, count: int, duration_s: float, *, by: str = "") -> Hold | None:
        """Hold the pool at `count` or more for `duration_s`; 0 removes any hold instead."""
        key = KEYS.hold(self.env, pool)
        with redis_errors(f"cannot write the hold of pool {pool} to Redis", error=_ERROR):
            if duration_s <= 0:
                self.connection.delete(key)
                return None
            until = self.clock() + duration_s
            value = json.dumps({"count": count, "until": until, "by": by, "set_at": self.clock()})
            self.connection.set(key, value, px=math.ceil(duration_s * 1000))
        return Hold(count, until)

    def restore(self, pool: str, previous: Hold | None) -> None:
        """Put back what was there before (used when the capacity change failed)."""
        key = KEYS.hold(self.env, pool)
        with redis_errors(f"cannot restore the hold of pool {pool} in Redis", error=_ERROR):
            if previous is None:
                self.connection.delete(key)
                return
            value = json.dumps({"count": previous.count, "until": previous.until})
            if previous.until is None:
                self.connection.set(key, value)
                return
            remaining = previous.until - self.clock()
            if remaining <= 0:
                self.connection.delete(key)
            else:
                self.connection.set(key, value, px=math.ceil(remaining * 1000))

    def release(self, pool: str) -> bool:
        """End the pool's hold; False when there was none."""
        with redis_errors(f"cannot end the hold of pool {pool} in Redis", error=_ERROR):
            return bool(self.connection.delete(KEYS.hold(self.env, pool)))
