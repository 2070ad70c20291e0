"""Stopping a worker while it runs a chunk: the chunk finishes, or is back in its queue at
once, never left unacknowledged until the visibility timeout (900 s here).

honcho and systemd send SIGTERM to the worker's whole process group; a terminal's Ctrl-C sends
SIGINT to the main process (the pool child has left the terminal's foreground group). Each
test proves the chunk had started, and no output existed, when the signal struck.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from harness.procs import wait_for
from harness.stack import Stack, write_json
from tests.integration.test_faults import (
    assert_exactly_once,
    comments,
    first_start,
    started_marker,
)
from tests.services import queue_and_unacked

pytestmark = pytest.mark.slow

ENV = {"EMOTIONS_VISIBILITY_TIMEOUT": "900", "EMOTIONS_STOP_GRACE_SECONDS": "1"}


def _group_sigterm(pid: int) -> None:
    os.killpg(pid, signal.SIGTERM)  # what honcho and systemd do


def _ctrl_c(pid: int) -> None:
    os.kill(pid, signal.SIGINT)  # what the terminal delivers to a foreground worker


@pytest.mark.parametrize("stop", [_group_sigterm, _ctrl_c], ids=["group-sigterm", "sigint"])
def test_stopped_mid_chunk_hands_the_chunk_back_at_once(
    stack: Stack, stop: Callable[[int], None]
) -> None:
    marker = started_marker(stack)
    worker = stack.start_worker(
        "w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="60", **ENV
    )
    expected = comments(12, "s")  # chunks of 8 and 4
    write_json(stack.input / "s.json", expected)
    producer = stack.start_producer("--once", **ENV)
    first_start(marker)
    assert not (stack.output / "s.json").exists()
    assert queue_and_unacked(stack) == (1, 1)  # one chunk queued, one in the worker's hands

    began = time.monotonic()
    stop(worker.pid)
    assert worker.wait(timeout=20) == 0, stack.log("w1")
    assert time.monotonic() - began < 6  # 1 s of grace, then the hand-back and Celery's stop
    assert queue_and_unacked(stack) == (2, 0), stack.log("w1")  # back in the queue, at once
    log = stack.log("w1")
    assert "handing 1 unfinished task(s) back to the queue" in log
    for noise in ("Traceback", "WorkerLostError", "ERROR/"):
        assert noise not in log, log

    stack.start_worker("w2", faulty=True, FAULT_STARTED_DIR=str(marker), **ENV)
    assert producer.wait(timeout=120) == 0, stack.log("producer")
    assert_exactly_once(stack, "s", expected)
    assert len(list(marker.iterdir())) == 3  # the handed-back chunk ran again, once


def test_stopped_mid_chunk_lets_a_short_chunk_finish(stack: Stack) -> None:
    marker = started_marker(stack)
    env = {**ENV, "EMOTIONS_STOP_GRACE_SECONDS": "30"}
    worker = stack.start_worker(
        "w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="3", **env
    )
    expected = comments(12, "f")
    write_json(stack.input / "f.json", expected)
    producer = stack.start_producer("--once", **env)
    first_start(marker)
    assert not (stack.output / "f.json").exists()

    _group_sigterm(worker.pid)
    assert worker.wait(timeout=30) == 0, stack.log("w1")
    log = stack.log("w1")
    assert "file=f.json chunk=0 records=8" in log and "handing" not in log, log
    assert queue_and_unacked(stack) == (1, 0)  # chunk 0 done and acknowledged; chunk 1 waits

    stack.start_worker("w2", faulty=True, FAULT_STARTED_DIR=str(marker), **env)
    assert producer.wait(timeout=120) == 0, stack.log("producer")
    assert_exactly_once(stack, "f", expected)
    assert len(list(marker.iterdir())) == 2  # each chunk ran once


def test_stopped_while_the_model_loads_hands_the_waiting_chunk_back(stack: Stack) -> None:
    """A first start downloads the model in the pool child for minutes, and the worker takes
    a chunk meanwhile; a stop then must neither wait for the load nor keep the chunk."""
    marker = started_marker(stack)
    worker = stack.start_worker(
        "w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_LOAD_SECONDS="120", **ENV
    )
    expected = comments(12, "m")
    write_json(stack.input / "m.json", expected)
    producer = stack.start_producer("--once", **ENV)
    wait_for(
        lambda: "classify_chunk[" in stack.log("w1") and " received" in stack.log("w1"),
        60,
        "the worker to take a chunk",
    )
    assert [p.name.split("-")[0] for p in marker.iterdir()] == ["loading"]  # still loading
    assert queue_and_unacked(stack) == (1, 1)

    began = time.monotonic()
    _group_sigterm(worker.pid)
    assert worker.wait(timeout=20) == 0, stack.log("w1")
    assert time.monotonic() - began < 6
    assert queue_and_unacked(stack) == (2, 0), stack.log("w1")
    for noise in ("Traceback", "WorkerLostError", "ERROR/"):
        assert noise not in stack.log("w1"), stack.log("w1")

    stack.start_worker("w2", **ENV)
    assert producer.wait(timeout=120) == 0, stack.log("producer")
    assert_exactly_once(stack, "m", expected)
