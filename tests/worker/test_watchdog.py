"""The threads pool's hard time limit (worker.watchdog), with injected clocks and exit."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from worker.watchdog import Overdue, watch


@dataclass(eq=False)
class Running:
    id: str
    name: str


class Polls:
    """What the watchdog sees running, counting its looks: a test waits for the watchdog to
    have looked (and so checked) instead of sleeping and hoping a loaded machine ran it."""

    def __init__(self, tasks: list[Running]) -> None:
        self.tasks = tasks
        self.count = 0

    def __call__(self) -> list[Running]:
        self.count += 1
        return list(self.tasks)

    def wait(self, looks: int = 2) -> None:
        """Until ``looks`` more looks happened: the one before the last was checked in full."""
        target = self.count + looks
        deadline = time.monotonic() + 30
        while self.count < target:
            assert time.monotonic() < deadline, "the watchdog stopped looking"
            time.sleep(0.005)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_task_is_timed_from_when_it_is_first_seen_running() -> None:
    clock = Clock()
    timer = Overdue(30, clock)
    a, b = Running("a", "t"), Running("b", "t")
    assert timer.check([a]) is None
    clock.now += 20
    assert timer.check([a, b]) is None  # b starts its own 30 s now
    clock.now += 10.5
    assert timer.check([a, b]) is a
    assert timer.check([b]) is None  # a finished: forgotten, b has run 10.5 s
    clock.now += 20
    assert timer.check([b]) is b
    assert timer.check([]) is None and timer.seen == {}


def test_a_wall_clock_step_does_not_kill_a_healthy_worker() -> None:
    """Celery's ``time_start`` is wall-clock time; a task accepted just before the clock
    jumped an hour ahead would look an hour old. The watchdog times on its own clock."""
    clock = Clock()
    exits: list[int] = []
    stop = threading.Event()
    started_wall = time.time() - 3600  # what a step of the wall clock makes it look like
    task = Running("x", "emotions.classify_chunk")
    task.time_start = started_wall  # type: ignore[attr-defined]
    polls = Polls([task])
    watch(30, running=polls, exit_process=exits.append, interval=0.02, stop=stop, clock=clock)
    polls.wait(5)
    stop.set()
    assert exits == []


def test_the_watchdog_exits_once_with_status_1_past_the_limit() -> None:
    clock = Clock()
    exits: list[int] = []
    stop = threading.Event()
    polls = Polls([Running("x", "emotions.classify_chunk")])
    thread = watch(
        30, running=polls, exit_process=exits.append, interval=0.02, stop=stop, clock=clock
    )
    polls.wait()  # the task is seen running at 1000
    clock.now += 29
    polls.wait()
    assert exits == []  # within the limit
    clock.now += 2
    thread.join(timeout=30)
    assert not thread.is_alive()  # the thread ends after asking to exit...
    stop.set()
    assert exits == [1]  # ...once


def test_the_watchdog_leaves_a_worker_whose_tasks_finish_in_time() -> None:
    clock = Clock()
    exits: list[int] = []
    stop = threading.Event()
    polls = Polls([])
    watch(20, running=polls, exit_process=exits.append, interval=0.01, stop=stop, clock=clock)
    for i in range(10):  # tasks of 15 s each, one after another: 150 s in all
        polls.tasks[:] = [Running(str(i), "t")]
        polls.wait()  # seen starting
        clock.now += 15
        polls.wait()  # seen at 15 s
    polls.tasks.clear()
    polls.wait()
    stop.set()
    assert exits == []
