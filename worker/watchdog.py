"""The hard time limit, for a worker whose pool runs tasks in its own process.

A prefork worker enforces ``task_time_limit`` by killing the pool child that runs the task. A
``-P threads`` worker cannot stop a thread, and Celery does not enforce time limits there, so
a chunk whose forward hangs (a stuck GPU, a call stuck in C code) would hold the worker, and
the chunks it has reserved, for ever. So such a worker watches its running tasks, and when
one passes the limit it logs the task at CRITICAL level, hands the chunks it holds back to
their queue (:func:`worker.shutdown.exit_handing_back`), and exits with status 1, as a killed
child would have died. What that leaves is what a lost pool child leaves: the chunk that hung
is counted by the job store's start counter, so a chunk that hangs every time fails its file;
the process supervisor (compose, systemd, honcho) starts the worker again.

Time is measured on the monotonic clock, from when the watchdog first sees a task running:
Celery's own ``time_start`` is wall-clock time, and a clock step (NTP, a VM resumed, an
operator fixing the date) would otherwise kill a healthy worker, or spare a hung one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # how often the running tasks are looked at


class Overdue:
    """Which running task has run longer than ``limit`` seconds of ``clock`` (monotonic).

    A task is timed from the first :meth:`check` that sees it, so the limit is enforced up to
    one check interval late; tasks no longer running are forgotten.
    """

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.seen: dict[Any, float] = {}

    def check(self, requests: Iterable[Any]) -> Any | None:
        """The first running request past the limit, or None."""
        now = self.clock()
        running = {_key(r): r for r in list(requests)}
        self.seen = {key: self.seen.get(key, now) for key in running}
        for key, request in running.items():
            if now - self.seen[key] > self.limit:
                return request
        return None


def _key(request: Any) -> Any:
    """A running request's identity: its task id, else the object itself."""
    return getattr(request, "id", None) or id(request)


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
    exit_process: Callable[[int], Any],
    running: Callable[[], Iterable[Any]] = running_requests,
    interval: float = CHECK_SECONDS,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> threading.Thread:
    """Start the watching thread (a daemon); ``stop`` ends it (tests).

    ``exit_process`` is called once with status 1 when a task passes the limit; the worker
    passes :func:`worker.shutdown.exit_handing_back`.
    """
    stop = stop or threading.Event()
    timer = Overdue(limit, clock)

    def loop() -> None:
        while not stop.wait(interval):
            request = timer.check(running())
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
