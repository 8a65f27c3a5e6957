"""The pause between two attempts: counted, logged, and slept with the connection returned."""

from __future__ import annotations

import logging
from time import monotonic
from typing import TYPE_CHECKING

from .._async_compat import sleep
from .._backoff import backoff_delay
from .._options import RetryOptions
from .._settings import deadline_exceeded

if TYPE_CHECKING:
    from .manager import AsyncSessionManager

__all__ = ["wait_before_retry"]


async def wait_before_retry(
    manager: AsyncSessionManager,
    attempt: int,
    reason: str,
    error: BaseException,
    retry: RetryOptions,
    deadline_at: float | None = None,
) -> None:
    """Back off before retry number ``attempt`` (the failed session is already closed);
    with a deadline, only if the retry can still start before it."""
    delay = backoff_delay(attempt, retry.delay, retry.max_delay, retry.jitter)
    if deadline_at is not None and monotonic() + delay >= deadline_at:
        raise deadline_exceeded(
            "before retry %d (after %s): its backoff of %.3f s would pass it"
            % (attempt, reason, delay),
            error,
        )
    if manager._monitoring:
        manager.monitor.retried(reason, attempt, error)
    manager._log(
        logging.WARNING,
        "retry %d of %d in %.3f s after %s: %r",
        attempt,
        retry.attempts,
        delay,
        reason,
        error,
    )
    await sleep(delay)
