"""The hard time limit, for a worker whose pool runs tasks in its own process.

A prefork worker enforces ``task_time_limit`` by killing the pool child that runs the task. A
``-P threads`` worker cannot stop a thread, and Celery does not enforce time limits there, so
a chunk whose forward hangs (a stuck GPU, a call stuck in C code) would hold the worker, and
the chunks it has reserved, for ever. So such a worker watches its running tasks, and when
one passes the limit it logs the task at CRITICAL level and exits with status 1, as a killed
child would have died. What that leaves is what a lost pool child leaves: the unacknowledged
messages go back to the queue (Redis' visibility timeout, or sooner the producer's
supervision, which sends a stalled file's missing chunks again); the job store has counted the
start, so a chunk that hangs every time fails its file; and the process supervisor (compose,
systemd, honcho) starts the worker again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from worker.shutdown import exit_now

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # how often the running tasks are looked at


def overdue(requests: Iterable[Any], limit: float, now: float) -> Any | None:
    """The first running request started more than ``limit`` seconds before ``now`` (wall
    clock, as Celery's ``time_start``), or None."""
    for request in list(requests):
        started = getattr(request, "time_start", None)
        if started and now - started > limit:
            return request
    return None


def running_requests() -> list[Any]:
    """The tasks this process is running (Celery's active requests), copied safely."""
    from celery.worker import state

    try:
        return list(state.active_requests)
    except RuntimeError:  # changed while copied: look again next time
        return []


def watch(
    limit: float,
    *,
    running: Callable[[], Iterable[Any]] = running_requests,
    exit_process: Callable[[int], Any] = exit_now,
    interval: float = CHECK_SECONDS,
    stop: threading.Event | None = None,
) -> threading.Thread:
    """Start the watching thread (a daemon); ``stop`` ends it (tests)."""
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            request = overdue(running(), limit, time.time())
            if request is not None:
                log.critical(
                    "task %s[%s] passed the hard time limit of %.0f s; this worker exits so "
                    "that its messages go back to the queue (a threads pool cannot stop a "
                    "thread)",
                    getattr(request, "name", "?"),
                    getattr(request, "id", "?"),
                    limit,
                )
                exit_process(1)
                return

    thread = threading.Thread(target=loop, name="time-limit-watchdog", daemon=True)
    thread.start()
    return thread
