"""Backoff delays: capped exponential, full jitter. Flavour-free, no database."""

from __future__ import annotations

import pytest

from sessionscope._backoff import backoff_delay


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, 0.1, 1.0, jitter=False) for n in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_draws_between_zero_and_the_cap() -> None:
    assert backoff_delay(3, 0.1, 1.0, jitter=True, draw=lambda: 0.0) == 0.0
    assert backoff_delay(3, 0.1, 1.0, jitter=True, draw=lambda: 0.5) == pytest.approx(0.2)
    assert backoff_delay(10, 0.1, 1.0, jitter=True, draw=lambda: 0.999) == pytest.approx(0.999)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(5000, 0.1, 30.0, jitter=False) == 30.0


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0, 0.1, 1.0, jitter=False)
