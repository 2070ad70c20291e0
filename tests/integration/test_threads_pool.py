"""A ``-P threads -c 1`` inference worker (the big-GPU mode): it loads its model before taking
a message, looks ahead at the chunks it has received, labels every comment exactly once, and
keeps a hard time limit that Celery does not enforce in a threads pool.

Real redis-server, real Celery workers (the fault-injecting harness around the real app) and
a real producer.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from harness.procs import wait_for
from harness.stack import Stack, write_json
from tests.services import assert_exactly_once, comments, queue_and_unacked, started_marker

pytestmark = pytest.mark.slow
THREADS = ("-P", "threads")


def test_a_threads_worker_tokenizes_received_chunks_ahead_and_labels_exactly_once(
    stack: Stack,
) -> None:
    # A slow chunk guarantees the next ones have arrived while it runs.
    stack.start_worker("w1", *THREADS, faulty=True, FAULT_SLOW_SECONDS="0.3")
    log = stack.log("w1")
    assert "looks ahead at received chunks=True" in log
    # Loaded in the main process before the worker said it was ready (no pool child to do it).
    assert -1 < log.find(" loaded on cpu") < log.find("worker ready"), log
    expected = comments(80, "t")  # 10 chunks of 8
    write_json(stack.input / "t.json", expected)
    assert stack.run_producer("--once", timeout=120).returncode == 0, stack.log("w1")
    assert_exactly_once(stack, "t", expected)
    ahead = [int(a) for a in re.findall(r"chunk=\d+ records=\d+ .* ahead=(\d)", stack.log("w1"))]
    assert len(ahead) == 10, stack.log("w1")
    # The first chunk cannot be known early; most of the others must have been.
    assert sum(ahead) >= 6, ahead


def test_a_threads_worker_reserves_chunks_beyond_the_one_it_runs(stack: Stack) -> None:
    """Celery's prefetch multiplier is raised for a threads pool (1 in our config), or there
    would be nothing to look ahead at; a prefork worker keeps 1."""
    stack.start_worker("w1", *THREADS, faulty=True, FAULT_SLOW_SECONDS="2")
    write_json(stack.input / "r.json", comments(40, "r"))
    producer = stack.start_producer("--once")
    from celery import Celery

    app = Celery(broker=stack.env()["EMOTIONS_BROKER_URL"])
    try:

        def reserved() -> int:
            replies = app.control.inspect(timeout=1).reserved() or {}
            return sum(len(v) for v in replies.values())

        wait_for(lambda: reserved() >= 2, 30, "two chunks reserved behind the running one")
    finally:
        app.close()
    assert producer.wait(timeout=120) == 0


def test_a_threads_worker_past_the_hard_time_limit_exits_and_the_file_still_ends(
    stack: Stack,
) -> None:
    marker = started_marker(stack)
    stuck = stack.start_worker(
        "w1",
        *THREADS,
        faulty=True,
        FAULT_STARTED_DIR=str(marker),
        FAULT_STUCK_SECONDS="120",
        EMOTIONS_TASK_TIME_LIMIT="3",
        EMOTIONS_VISIBILITY_TIMEOUT="300",
    )
    expected = comments(4, "h")
    write_json(stack.input / "h.json", expected)
    producer = stack.start_producer("--once", EMOTIONS_TASK_TIME_LIMIT="3")
    wait_for(lambda: any(marker.iterdir()), 30, "the chunk started (and hangs)")
    begun = time.monotonic()
    assert stuck.wait(timeout=30) == 1, stack.log("w1")
    assert time.monotonic() - begun < 15  # the 3 s limit and a check, not the 120 s hang
    assert "passed the hard time limit" in stack.log("w1")
    # A healthy worker takes the chunk the producer's supervision sends again (the stuck
    # worker's messages would only come back after the 300 s visibility timeout).
    stack.start_worker("w2", *THREADS, EMOTIONS_TASK_TIME_LIMIT="3")
    assert producer.wait(timeout=90) == 0, stack.log("producer")
    assert_exactly_once(stack, "h", expected)


STOP_ENV = {"EMOTIONS_VISIBILITY_TIMEOUT": "900", "EMOTIONS_STOP_GRACE_SECONDS": "1"}


def test_a_threads_worker_stopped_mid_chunk_hands_every_chunk_back_at_once(stack: Stack) -> None:
    """The running chunk and the ones reserved behind it go back to the queue within the stop
    grace, not after the visibility timeout; the thread still running is not waited for."""
    marker = started_marker(stack)
    worker = stack.start_worker(
        "w1",
        *THREADS,
        faulty=True,
        FAULT_STARTED_DIR=str(marker),
        FAULT_SLOW_SECONDS="60",
        **STOP_ENV,
    )
    expected = comments(24, "s")  # three chunks of 8: one running, two reserved
    write_json(stack.input / "s.json", expected)
    producer = stack.start_producer("--once", **STOP_ENV)
    wait_for(lambda: any(marker.iterdir()), 60, "a chunk to start")
    wait_for(lambda: queue_and_unacked(stack) == (0, 3), 10, "all three chunks in the worker")
    assert not (stack.output / "s.json").exists()

    began = time.monotonic()
    os.killpg(worker.pid, signal.SIGTERM)  # what honcho and systemd do
    assert worker.wait(timeout=20) == 0, stack.log("w1")
    assert time.monotonic() - began < 6, stack.log("w1")
    assert queue_and_unacked(stack) == (3, 0), stack.log("w1")
    for noise in ("Traceback", "ERROR/"):
        assert noise not in stack.log("w1"), stack.log("w1")

    stack.start_worker("w2", *THREADS, **STOP_ENV)
    assert producer.wait(timeout=120) == 0, stack.log("producer")
    assert_exactly_once(stack, "s", expected)


def test_a_threads_worker_stopped_lets_a_short_chunk_finish(stack: Stack) -> None:
    marker = started_marker(stack)
    env = {**STOP_ENV, "EMOTIONS_STOP_GRACE_SECONDS": "30"}
    worker = stack.start_worker(
        "w1", *THREADS, faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="3", **env
    )
    expected = comments(24, "f")
    write_json(stack.input / "f.json", expected)
    producer = stack.start_producer("--once", **env)
    wait_for(lambda: any(marker.iterdir()), 60, "a chunk to start")
    assert not (stack.output / "f.json").exists()

    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, stack.log("w1")
    log = stack.log("w1")
    assert "file=f.json chunk=0 records=8" in log and "unfinished" not in log, log
    assert queue_and_unacked(stack) == (2, 0), log  # chunk 0 acknowledged, 1 and 2 back

    stack.start_worker("w2", *THREADS, **env)
    assert producer.wait(timeout=120) == 0, stack.log("producer")
    assert_exactly_once(stack, "f", expected)


def test_a_threads_worker_that_cannot_load_the_model_stops_with_status_1(
    stack: Stack, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(stack.model, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")  # config still loads
    proc = stack.start_worker("broken", *THREADS, wait=False, EMOTIONS_MODEL=str(broken))
    assert proc.wait(timeout=90) == 1, stack.log("broken")
    log = stack.log("broken")
    assert "model load failed, stopping the worker" in log
    assert " ready." not in log  # it never took a message


def test_a_threads_worker_whose_model_load_hangs_stops_with_status_1(stack: Stack) -> None:
    """A prefork child that hangs loading is killed after EMOTIONS_MODEL_LOAD_TIMEOUT by
    Celery; a threads worker loads in its main process, so it bounds the load itself."""
    proc = stack.start_worker(
        "hung",
        *THREADS,
        faulty=True,
        wait=False,
        FAULT_SLOW_LOAD_SECONDS="120",
        EMOTIONS_MODEL_LOAD_TIMEOUT="5",
    )
    assert proc.wait(timeout=60) == 1, stack.log("hung")
    log = stack.log("hung")
    assert "model load took longer than EMOTIONS_MODEL_LOAD_TIMEOUT=5 s" in log, log
    assert " ready." not in log
