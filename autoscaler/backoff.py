"""Full-jitter exponential backoff: how long to wait before the next try. Pure, no sleeping.

Full jitter (a uniform draw between zero and the exponential bound) spreads the retries of many
callers hit by the same throttle, where plain exponential backoff would have them retry in step.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["BASE_S", "CAP_S", "full_jitter"]

BASE_S = 0.5
CAP_S = 10.0
# 2**40 times any sensible base is far past any cap; the clamp keeps the float from overflowing.
_MAX_EXPONENT = 40


def full_jitter(
    retry: int,
    *,
    base_s: float = BASE_S,
    cap_s: float = CAP_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `retry` (1 for the first): uniform in [0, bound].

    The bound is `min(cap_s, base_s * 2**(retry - 1))`; `rand` returns a value in [0, 1).
    """
    if retry < 1:
        raise ValueError(f"retry must be at least 1, got {retry}")
    bound = min(cap_s, base_s * 2.0 ** min(retry - 1, _MAX_EXPONENT))
    return bound * rand()
