"""emotions.retries: back-off doubles up to its cap, is never zero, and is spread by jitter so
that chunks failing together do not all come back together."""

from __future__ import annotations

import random

import pytest

from emotions.retries import compute_backoff, may_retry


@pytest.mark.parametrize(
    ("attempt", "cap", "expected"),
    [(0, 60, 1.0), (1, 60, 2.0), (3, 60, 8.0), (5, 60, 32.0), (6, 60, 60.0), (10, 5, 5.0)],
)
def test_without_jitter_it_doubles_up_to_the_cap(attempt: int, cap: float, expected: float) -> None:
    assert compute_backoff(attempt, cap, jitter=False) == expected


def test_a_huge_attempt_number_is_the_cap_not_an_overflow() -> None:
    assert compute_backoff(10_000, 60, jitter=False) == 60.0
    assert 30.0 <= compute_backoff(10_000, 60) <= 60.0


@pytest.mark.parametrize(("attempt", "cap"), [(0, 60), (2, 60), (4, 10), (20, 60)])
def test_jitter_stays_between_half_and_the_full_wait(attempt: int, cap: float) -> None:
    full = compute_backoff(attempt, cap, jitter=False)
    waits = [compute_backoff(attempt, cap) for _ in range(500)]
    assert all(full / 2 <= w <= full for w in waits)
    assert min(waits) > 0
    # Spread out: many distinct values covering most of the range.
    assert len(set(waits)) > 400
    assert max(waits) - min(waits) > 0.8 * (full / 2)


def test_jitter_uses_the_random_module() -> None:
    random.seed(7)
    first = [compute_backoff(3, 60) for _ in range(5)]
    random.seed(7)
    assert [compute_backoff(3, 60) for _ in range(5)] == first
    assert len(set(first)) == 5


@pytest.mark.parametrize(
    ("so_far", "limit", "expected"),
    [(0, 0, False), (0, 3, True), (2, 3, True), (3, 3, False), (4, 3, False)],
)
def test_may_retry(so_far: int, limit: int, expected: bool) -> None:
    assert may_retry(so_far, limit) is expected
