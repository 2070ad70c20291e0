"""Work a dying worker held comes back at once, not after a stall period or the visibility
timeout: the assembly of a file whose last chunk was stored by a worker killed before it
queued the assembly, and the chunks a threads worker reserved when its hard time limit made
it exit. Real redis-server, real workers (the fault-injecting harness), real producer.
"""

from __future__ import annotations

import time

import pytest

from harness.procs import wait_for
from harness.stack import Stack, write_json
from tests.services import assert_exactly_once, comments, queue_and_unacked, started_marker

pytestmark = pytest.mark.slow
THREADS = ("-P", "threads")


def test_a_worker_killed_after_storing_the_last_chunk_still_queues_the_assembly(
    stack: Stack,
) -> None:
    """The pool child dies between storing the file's last chunk and queueing its assembly.
    Its chunk comes back (the pool saw the child die) and its second run is told to queue
    the assembly; before, the job waited for the producer's stall supervision (30 min here:
    3 x the 600 s task time limit)."""
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_KILL_AFTER_STORE=str(marker))
    expected = comments(20, "z")  # three chunks
    write_json(stack.input / "z.json", expected)
    producer = stack.start_producer("--once")
    wait_for(lambda: (marker / "killed-after-store").exists(), 60, "the kill after the store")
    assert not (stack.output / "z.json").exists()  # all labels stored, no assembly queued
    began = time.monotonic()
    assert producer.wait(timeout=90) == 0, stack.log("producer") + stack.log("w1")
    assert time.monotonic() - began < 90
    assert_exactly_once(stack, "z", expected)
    log = stack.log("w1")
    assert "stored before; the file is assembled (or queued) again" in log, log
    assert "heal=" not in stack.log("producer")  # not the supervisor's doing


LIMIT_ENV = {
    "EMOTIONS_TASK_TIME_LIMIT": "3",
    "EMOTIONS_VISIBILITY_TIMEOUT": "900",
    "EMOTIONS_STALL_SECONDS": "600",
}


def test_a_threads_worker_past_the_hard_time_limit_hands_its_chunks_back_first(
    stack: Stack,
) -> None:
    """The watchdog's exit puts the hung chunk and the ones reserved behind it back on the
    queue: without that they wait out the 900 s visibility timeout (or the 600 s stall)."""
    marker = started_marker(stack)
    stuck = stack.start_worker(
        "w1",
        *THREADS,
        faulty=True,
        FAULT_STARTED_DIR=str(marker),
        FAULT_STUCK_SECONDS="120",
        **LIMIT_ENV,
    )
    expected = comments(24, "q")  # three chunks: one hangs, two reserved behind it
    write_json(stack.input / "q.json", expected)
    producer = stack.start_producer("--once", **LIMIT_ENV)
    wait_for(lambda: any(marker.iterdir()), 30, "the chunk started (and hangs)")
    wait_for(lambda: queue_and_unacked(stack) == (0, 3), 10, "all three chunks in the worker")
    assert stuck.wait(timeout=30) == 1, stack.log("w1")
    assert "passed the hard time limit" in stack.log("w1")
    assert queue_and_unacked(stack) == (3, 0), stack.log("w1")  # handed back before the exit
    stack.start_worker("w2", *THREADS, **LIMIT_ENV)
    assert producer.wait(timeout=90) == 0, stack.log("producer")
    assert_exactly_once(stack, "q", expected)
