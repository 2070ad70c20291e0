"""A GPU that breaks, or computes wrong, never fails or mislabels files.

Real redis-server, real Celery workers and a real producer, on the CPU. The device faults are
injected from outside the engine by the fault-injecting worker (``harness/faulty_worker.py``):
the error a real card raises after an illegal memory access, NaN logits on the device path,
a wrong attention kernel, a failed graph capture.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from emotions.constants import DEVICE_FAULT_CHUNKS, DEVICE_FAULT_EXIT
from harness.procs import wait_for
from harness.stack import ROOT, Stack, write_json
from tests.services import assert_exactly_once, comments, queue_and_unacked, started_marker

pytestmark = pytest.mark.slow


def device_faults(marker: Path) -> list[Path]:
    return [p for p in marker.iterdir() if p.name.startswith("devfault-")]


def labels(stack: Stack, stem: str) -> list[str]:
    return [r["emotion"] for r in stack.output_records(stem)]


def run_file(stack: Stack, stem: str, records: list[dict[str, Any]]) -> list[str]:
    write_json(stack.input / f"{stem}.json", records)
    done = stack.run_producer("--once")
    assert done.returncode == 0, done.stderr
    assert_exactly_once(stack, stem, records)
    return labels(stack, stem)


def clean_labels(stack: Stack, records: list[dict[str, Any]]) -> list[str]:
    """The labels of an untouched worker (started after the others are stopped)."""
    stack.stop_all(graceful=False)
    stack.start_worker("clean")
    return run_file(stack, "clean", records)


def test_a_broken_gpu_stops_its_worker_and_every_file_comes_out(stack: Stack) -> None:
    marker = started_marker(stack)
    broken = stack.start_worker(
        "broken", faulty=True, FAULT_DEVICE_ERROR="1", FAULT_STARTED_DIR=str(marker)
    )
    # Slowed down so that the broken worker meets several chunks before they are all done.
    healthy = stack.start_worker("healthy", faulty=True, FAULT_SLOW_SECONDS="0.5")
    files = {f"f{i}": comments(20, f"f{i}") for i in range(8)}
    for stem, records in files.items():
        write_json(stack.input / f"{stem}.json", records)
    done = stack.run_producer("--once", timeout=240)
    assert done.returncode == 0, done.stderr + stack.log("broken")
    for stem, records in files.items():
        assert_exactly_once(stack, stem, records)
    assert not any(stack.failed.iterdir())
    # Two different chunks faulted: the card is taken as broken and the worker stops, status 1.
    assert broken.wait(timeout=60) == 1, stack.log("broken")
    assert len(device_faults(marker)) == DEVICE_FAULT_CHUNKS
    log = stack.log("broken")
    assert log.count("CRITICAL") >= DEVICE_FAULT_CHUNKS
    assert "CPU failed: AcceleratorError: CUDA error: an illegal memory access" in log
    assert "a fresh one reloads the model" in log and "it is broken" in log
    assert log.count("worker runs on:") >= DEVICE_FAULT_CHUNKS  # the first child and its heir
    assert healthy.poll() is None
    assert queue_and_unacked(stack) == (0, 0)


def test_a_gpu_that_stays_lost_stops_its_worker_at_the_reload(stack: Stack) -> None:
    marker = started_marker(stack)
    env = {"FAULT_DEVICE_ERROR": "1", "FAULT_DEVICE_STICKS": "1"}
    broken = stack.start_worker("broken", faulty=True, FAULT_STARTED_DIR=str(marker), **env)
    expected = comments(16, "l")
    write_json(stack.input / "l.json", expected)
    producer = stack.start_producer("--once")
    assert broken.wait(timeout=90) == 1, stack.log("broken")
    assert len(device_faults(marker)) == 1  # one fault, then the fresh child could not load
    assert "model load failed in pool child" in stack.log("broken")
    assert queue_and_unacked(stack)[1] == 0
    stack.start_worker("healthy")
    assert producer.wait(timeout=90) == 0, stack.log("producer")
    assert_exactly_once(stack, "l", expected)


def test_a_chunk_that_breaks_every_gpu_fails_its_file_after_the_start_limit(
    stack: Stack,
) -> None:
    env = {"FAULT_DEVICE_TEXT": "POISON", "EMOTIONS_MAX_RETRIES": "0"}
    workers = [stack.start_worker(name, faulty=True, **env) for name in ("w1", "w2")]
    bad = comments(12, "x")
    bad[10]["comment"] = "POISON pill"  # in chunk 1 (chunks of 8)
    write_json(stack.input / "bad.json", bad)
    good = {f"g{i}": comments(12, f"g{i}") for i in range(3)}
    for stem, records in good.items():
        write_json(stack.input / f"{stem}.json", records)
    done = stack.run_producer("--once", timeout=240)
    assert done.returncode == 1, done.stderr
    report = orjson.loads((stack.failed / "bad.json.error.json").read_bytes())
    assert report["chunk"] == 1 and "begun" in report["error"], report
    for stem, records in good.items():
        assert_exactly_once(stack, stem, records)
    logs = stack.log("w1") + stack.log("w2")
    assert "illegal memory access" in logs and "chunk goes back to its queue" in logs
    # A chunk that breaks every worker is the chunk's fault, not the cards': both still run.
    assert all(w.poll() is None for w in workers), logs


def test_a_threads_worker_with_a_broken_gpu_hands_back_its_chunks_and_exits(
    stack: Stack,
) -> None:
    marker = started_marker(stack)
    files = {f"t{i}": comments(16, f"t{i}") for i in range(3)}
    for stem, records in files.items():
        write_json(stack.input / f"{stem}.json", records)
    producer = stack.start_producer("--once")
    chunks = 6  # two per file
    wait_for(lambda: queue_and_unacked(stack)[0] == chunks, 60, "every chunk to be queued")
    broken = stack.start_worker(
        "broken",
        "-P",
        "threads",
        faulty=True,
        wait=False,
        FAULT_DEVICE_ERROR="1",
        FAULT_STARTED_DIR=str(marker),
    )
    assert broken.wait(timeout=120) == DEVICE_FAULT_EXIT, stack.log("broken")
    assert len(device_faults(marker)) == 1
    # The chunk in hand and the ones it reserved behind it are all back in the queue at once,
    # none left unacknowledged until the visibility timeout.
    assert queue_and_unacked(stack) == (chunks, 0)
    assert stack.log("broken").count("Task emotions.classify_chunk") >= 2  # it held several
    stack.start_worker("healthy")
    assert producer.wait(timeout=120) == 0, stack.log("producer")
    for stem, records in files.items():
        assert_exactly_once(stack, stem, records)
    assert "goes back to its queue" in stack.log("broken")


def test_rows_with_nan_logits_get_their_fp32_labels(stack: Stack) -> None:
    records = [{"id": i, "comment": f"comment {'word ' * (i % 7)} number {i}"} for i in range(40)]
    stack.start_worker("nan", faulty=True, FAULT_NAN_EVERY="2")
    got = run_file(stack, "nan", records)
    counts = [
        int(line.rsplit("nonfinite=", 1)[1].split()[0])
        for line in stack.log("nan").splitlines()
        if "nonfinite=" in line
    ]
    assert sum(counts) > 0, stack.log("nan")
    assert "non-finite logits: relabelled in fp32" in stack.log("nan")
    assert got == clean_labels(stack, records)


def test_a_failed_graph_capture_runs_eagerly_with_the_right_labels(stack: Stack) -> None:
    records = comments(30, "c")
    stack.start_worker("capture", faulty=True, FAULT_CAPTURE_FAILS="2")
    got = run_file(stack, "capture", records)
    log = stack.log("capture")
    assert "CUDA graphs off, running eagerly: capture of" in log
    assert "graphs=off (capture of" in log  # the start-up line says so too
    assert got == clean_labels(stack, records)


def test_a_self_test_mismatch_steps_down_and_says_why(stack: Stack) -> None:
    records = comments(30, "s")
    stack.start_worker("wrong", faulty=True, FAULT_WRONG_ATTENTION="default")
    got = run_file(stack, "wrong", records)
    log = stack.log("wrong")
    assert "stepping down: math attention kernel" in log
    assert "attention=math" in log and "path_chosen_because=" in log
    assert got == clean_labels(stack, records)


def test_a_worker_whose_every_path_disagrees_with_fp32_refuses_to_start(stack: Stack) -> None:
    proc = stack.start_worker(
        "wrong", faulty=True, wait=False, FAULT_WRONG_ATTENTION="default,math"
    )
    assert proc.wait(timeout=90) == 1, stack.log("wrong")
    assert "cannot be trusted" in stack.log("wrong")


def test_inspect_stats_say_how_the_worker_runs(stack: Stack) -> None:
    stack.start_worker("w1")
    wait_for(lambda: "worker runs on:" in stack.log("w1"), 30, "the start-up line")
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "inspect", "stats", "--json"],
        cwd=ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    stats = next(iter(json.loads(done.stdout.strip().splitlines()[-1]).values()))
    about = stats["emotions"]
    assert about["device"] == "cpu" and about["dtype"] == "float32"
    assert about["mask"] in ("4d", "3d", "2d") and about["graphs"].startswith("off")
    assert about["batch_size"] == 16 and about["tokenizer"]
    assert about["self_test"].endswith("compared)")
