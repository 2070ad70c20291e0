"""The threads pool's hard time limit (worker.watchdog), with injected clocks and exit."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from worker.watchdog import overdue, watch


@dataclass(eq=False)
class Running:
    id: str
    name: str
    time_start: float | None


def test_only_a_task_past_the_limit_is_overdue() -> None:
    now = 1000.0
    fresh, accepted_late, old = (
        Running("a", "t", 999.0),
        Running("b", "t", None),
        Running("c", "t", 900.0),
    )
    assert overdue([fresh, accepted_late], 30, now) is None  # not started yet: not timed
    assert overdue([fresh, old], 30, now) is old
    assert overdue([Running("d", "t", 970.5)], 30, now) is None


def test_the_watchdog_exits_once_with_status_1_past_the_limit() -> None:
    exits: list[int] = []
    stop = threading.Event()
    running = [Running("x", "emotions.classify_chunk", time.time())]
    watch(0.3, running=lambda: running, exit_process=exits.append, interval=0.05, stop=stop)
    time.sleep(0.15)
    assert exits == []  # within the limit
    deadline = time.monotonic() + 5
    while not exits and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert exits == [1]
    time.sleep(0.2)
    assert exits == [1]  # once: the thread ends after asking to exit


def test_the_watchdog_leaves_a_worker_whose_tasks_finish_in_time() -> None:
    exits: list[int] = []
    stop = threading.Event()
    running: list[Running] = []
    watch(0.2, running=lambda: list(running), exit_process=exits.append, interval=0.02, stop=stop)
    for i in range(10):  # short tasks, one after another
        running[:] = [Running(str(i), "t", time.time())]
        time.sleep(0.05)
    running.clear()
    time.sleep(0.3)
    stop.set()
    assert exits == []
