"""The retry policy of the pipeline, in one place.

- **What is retried**: a chunk whose error is not a :class:`~emotions.errors.PermanentError`
  (out of memory on a single comment, lost connections, the soft time limit; a GPU fault stops
  its process instead, :mod:`worker.faults`) is
  retried up to ``EMOTIONS_MAX_RETRIES`` times; then its job fails with a report naming the
  chunk. An assembly that cannot write its output (disk full, folder read-only) is retried
  for as long as its job is queued; the supervisor in the producer fails the job after
  ``MAX_HEALS`` stall periods without progress, so a disk full for an hour still ends with the
  output, and one full forever ends with a report.
- **When**: exponential back-off, 1, 2, 4, ... seconds capped at
  ``EMOTIONS_RETRY_BACKOFF_MAX``, with full jitter, so that chunks failing together (a GPU
  reset, a Redis restart) do not come back together.
- **Counting**: Celery's ``Task.retry(max_retries=None)`` means "the task's default" (3), not
  "forever", and raises the original error once retries run out; callers therefore decide
  with :func:`may_retry` and pass the limit explicitly.
"""

from __future__ import annotations

import random


def compute_backoff(attempt: int, cap: float, *, jitter: bool = True) -> float:
    """Seconds to wait before retry ``attempt + 1``: ``min(cap, 2**attempt)``, jittered.

    With jitter the wait is uniform in ``[half, full]`` of that value: never zero (a retry
    storm on a broken GPU helps nobody), yet spread out.
    """
    full = min(cap, float(2 ** min(attempt, 32)))
    return random.uniform(full / 2, full) if jitter else full


def may_retry(retries_so_far: int, max_retries: int) -> bool:
    """True while another retry is allowed (``max_retries`` 0: never retry)."""
    return retries_so_far < max_retries
