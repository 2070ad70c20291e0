"""Faults injected into real processes mid-work: every comment still comes out exactly once.

Each test proves the fault struck while work was unfinished (a chunk had started and no
output existed yet), because fast code finishes before any fixed sleep ends.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import orjson
import pytest

from emotions.constants import ledger_key
from harness.procs import kill_group, wait_for
from harness.stack import Stack, write_json
from producer.ledger import folder_id
from tests.services import assert_exactly_once, comments, started_marker

pytestmark = pytest.mark.slow


def first_start(marker: Path) -> int:
    """Wait for a chunk to start; the pid of the pool child running it."""
    files = wait_for(lambda: sorted(marker.iterdir()), 60, "a chunk to start")
    return int(files[0].name.split("-")[0])


def test_pool_child_sigkilled_mid_chunk(stack: Stack) -> None:
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="2")
    expected = comments(12, "k")  # two chunks
    write_json(stack.input / "k.json", expected)
    producer = stack.start_producer("--once")
    child = first_start(marker)
    assert not (stack.output / "k.json").exists()  # the chunk is still running
    os.kill(child, signal.SIGKILL)  # what the kernel's OOM killer does
    assert producer.wait(timeout=90) == 0, stack.log("producer")
    assert_exactly_once(stack, "k", expected)
    assert len(list(marker.iterdir())) >= 3  # the killed chunk ran again


def test_whole_worker_sigkilled_and_restarted(stack: Stack) -> None:
    marker = started_marker(stack)
    env = {
        "EMOTIONS_VISIBILITY_TIMEOUT": "8",
        "EMOTIONS_TASK_TIME_LIMIT": "6",
        "FAULT_STARTED_DIR": str(marker),
        "FAULT_SLOW_SECONDS": "2",
    }
    worker = stack.start_worker("w1", faulty=True, **env)
    expected = comments(20, "w")
    write_json(stack.input / "w.json", expected)
    producer = stack.start_producer("--once", **env)
    first_start(marker)
    assert not (stack.output / "w.json").exists()
    kill_group(worker)  # main process and pool child at once: nobody acknowledges
    stack.start_worker("w2", faulty=True, **env)
    assert producer.wait(timeout=150) == 0, stack.log("producer")
    assert_exactly_once(stack, "w", expected)


def test_producer_sigkilled_and_restarted(stack: Stack) -> None:
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="1")
    files = {"a": comments(4, "a"), "b": comments(20, "b"), "c": comments(20, "c")}
    for stem, records in files.items():
        write_json(stack.input / f"{stem}.json", records)
    producer = stack.start_producer()
    wait_for(lambda: (stack.output / "a.json").exists(), 60, "the first file")
    a_written = (stack.output / "a.json").stat().st_mtime_ns
    assert not (stack.output / "c.json").exists()  # b and c are in flight
    kill_group(producer)
    again = stack.run_producer("--once", timeout=120)
    assert again.returncode == 0, again.stderr
    for stem, records in files.items():
        assert_exactly_once(stack, stem, records)
    assert (stack.output / "a.json").stat().st_mtime_ns == a_written  # not redone
    logs = stack.log("producer") + again.stderr
    for stem in files:  # each file was enqueued exactly once, across both producers
        assert logs.count(f"file={stem}.json event=enqueued") == 1, logs


def test_redis_restarted_while_chunks_queued_and_running(stack: Stack) -> None:
    marker = started_marker(stack)
    env = {"EMOTIONS_VISIBILITY_TIMEOUT": "10", "EMOTIONS_TASK_TIME_LIMIT": "8"}
    stack.start_worker(
        "w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="1", **env
    )
    files = {s: comments(16, s) for s in ("r1", "r2", "r3")}
    for stem, records in files.items():
        write_json(stack.input / f"{stem}.json", records)
    producer = stack.start_producer("--once", **env)
    first_start(marker)
    assert not (stack.output / "r3.json").exists()
    stack.redis.stop()  # SIGTERM: Redis writes its append-only file and exits
    stack.redis.start()  # same port, same folder
    assert producer.wait(timeout=150) == 0, stack.log("producer") + stack.log("w1")
    for stem, records in files.items():
        assert_exactly_once(stack, stem, records)


def test_chunk_failing_for_good_fails_only_its_file(stack: Stack) -> None:
    stack.start_worker("w1", faulty=True, FAULT_FAIL_TEXT="POISON", EMOTIONS_MAX_RETRIES="1")
    bad = comments(12, "x")
    bad[10]["comment"] = "POISON pill"  # in chunk 1 (chunks of 8)
    write_json(stack.input / "bad.json", bad)
    good = comments(12, "g")
    write_json(stack.input / "good.json", good)
    done = stack.run_producer("--once")
    assert done.returncode == 1
    report = orjson.loads((stack.failed / "bad.json.error.json").read_bytes())
    assert report["chunk"] == 1 and "injected failure" in report["error"]
    assert (stack.failed / "bad.json").exists()
    assert not (stack.output / "bad.json").exists()  # no partial output
    assert_exactly_once(stack, "good", good)


def test_cuda_oom_is_retried_in_halves(stack: Stack) -> None:
    marker = started_marker(stack)
    stack.start_worker(
        "w1",
        faulty=True,
        FAULT_STARTED_DIR=str(marker),
        FAULT_OOM_ABOVE="1",
        EMOTIONS_CHUNK_SIZE="40",
    )
    expected = comments(40, "o")
    write_json(stack.input / "o.json", expected)
    reference = stack.root / "reference"
    assert stack.run_producer("--once", EMOTIONS_CHUNK_SIZE="40").returncode == 0
    assert_exactly_once(stack, "o", expected)
    ooms = sorted(int(p.name.split("-")[1]) for p in marker.iterdir() if p.name.startswith("oom"))
    assert {16, 8, 4, 2} <= set(ooms)  # batch 16 -> 8 -> 4 -> 2 -> 1
    # Labels are those of an unconstrained run.
    stack.stop_all(graceful=False)
    stack.start_worker("w2")
    shutil.move(stack.output / "o.json", reference)
    write_json(stack.input / "o2.json", expected)
    assert stack.run_producer("--once", EMOTIONS_CHUNK_SIZE="40").returncode == 0
    assert orjson.loads(reference.read_bytes()) == stack.output_records("o2")


def test_cuda_oom_on_a_single_comment_fails_the_chunk(stack: Stack) -> None:
    stack.start_worker("w1", faulty=True, FAULT_OOM_ABOVE="0", EMOTIONS_MAX_RETRIES="1")
    write_json(stack.input / "huge.json", comments(3, "h"))
    assert stack.run_producer("--once").returncode == 1
    report = orjson.loads((stack.failed / "huge.json.error.json").read_bytes())
    assert "InferenceOOMError" in report["error"] and report["chunk"] == 0


def test_file_rewritten_while_queued_keeps_only_last_content(stack: Stack) -> None:
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="1")
    write_json(stack.input / "f.json", comments(24, "old"))
    stack.start_producer()
    first_start(marker)
    newer = comments(10, "new")
    write_json(stack.input / "f.json", newer)  # atomic rename over the queued file
    wait_for(
        lambda: (
            b'"done"'
            in (stack.redis.client().hget(ledger_key(folder_id(stack.input)), "f.json") or b"")
        ),
        90,
        "the ledger to record the file as done",
    )
    assert_exactly_once(stack, "f", newer)
    assert "event=superseded" in stack.log("producer")
    # The same content dropped in again is not redone.
    written = (stack.output / "f.json").stat().st_mtime_ns
    write_json(stack.input / "f.json", newer)
    wait_for(lambda: "file=f.json event=skipped" in stack.log("producer"), 30, "the re-drop")
    assert stack.log("producer").count("event=enqueued") == 2
    assert (stack.output / "f.json").stat().st_mtime_ns == written


def test_unwritable_output_folder_keeps_results_until_fixed(stack: Stack) -> None:
    stack.start_worker("w1")
    shutil.rmtree(stack.output)
    stack.output.write_text("a file where the output folder should be")
    expected = comments(10, "u")
    write_json(stack.input / "u.json", expected)
    producer = stack.start_producer("--once")
    wait_for(lambda: "cannot write output" in stack.log("w1"), 60, "the write error")
    parts = stack.redis.client().keys("emotions:job:*:parts")
    assert parts and stack.redis.client().hlen(parts[0]) == 2  # chunk results kept
    stack.output.unlink()
    stack.output.mkdir()
    assert producer.wait(timeout=60) == 0
    assert_exactly_once(stack, "u", expected)


def test_redis_memory_returns_to_baseline(stack: Stack) -> None:
    stack.start_worker("w1")
    client = stack.redis.client()
    write_json(stack.input / "warm.json", comments(5, "warm"))  # connections and queues exist
    assert stack.run_producer("--once").returncode == 0
    baseline = int(client.info("memory")["used_memory"])
    text = "a fairly long comment that takes real space in Redis while it is in flight " * 3
    for i in range(5):
        write_json(
            stack.input / f"m{i}.json", [{"id": f"m{i}-{j}", "comment": text} for j in range(300)]
        )
    assert stack.run_producer("--once").returncode == 0  # ~330 kB of comments went through
    assert not client.keys("emotions:job:*:parts") and not client.keys("emotions:job:*:done")
    # Left: six small job records (with a TTL) and six ledger entries; no comment text.
    ours = sum(int(client.memory_usage(k) or 0) for k in client.keys("emotions:*"))
    assert ours < 10_000
    assert int(client.info("memory")["used_memory"]) - baseline < 100_000
    assert all(client.ttl(k) > 0 for k in client.keys("emotions:job:*"))
