"""How long to wait before retry number ``attempt``: capped exponential backoff, full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    delay: float,
    max_delay: float,
    jitter: bool,
    draw: Callable[[], float] = random.random,
) -> float:
    """``min(max_delay, delay * 2 ** (attempt - 1))``, scaled by a uniform draw when jittered.

    ``attempt`` counts retries from 1. Full jitter (a uniform wait between
    zero and the cap) spreads out clients that failed together, such as the
    two sides of a deadlock, so they do not collide again.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts retries from 1, got {attempt}")
    # 2 ** attempt overflows a float past ~1000 retries: cap the exponent.
    ceiling = min(max_delay, delay * 2.0 ** min(attempt - 1, 64))
    return ceiling * draw() if jitter else ceiling
