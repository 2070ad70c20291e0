"""The producer's state with real processes: one output truth, several producers on one
Redis, a send failing mid-feed, fair feeding and big folders.

Every test runs a real redis-server, real Celery workers and real producers; where a fault
strikes "mid-feed", the test proves the file was still being fed when it struck.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import orjson
import pytest

from emotions.constants import DONE, FAILED
from emotions.jobs import JobStore
from harness.procs import wait_for
from harness.stack import RedisServer, Stack, write_json
from producer.ledger import Ledger
from tests.services import (
    assert_exactly_once,
    comments,
    reference_labels,
    started_marker,
    varied,
)

pytestmark = pytest.mark.slow


def ledger(stack: Stack, folder: Path) -> Ledger:
    return Ledger(stack.redis.client(), folder, stack.output)


def test_a_broker_gone_mid_feed_shifts_no_label(stack: Stack, tmp_path: Path) -> None:
    """The broker (a Redis of its own) goes away while a file is fed a window at a time: every
    feed meanwhile fails to send; afterwards every chunk index carries its own text."""
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    try:
        env = {
            "EMOTIONS_BROKER_URL": broker.url,
            "EMOTIONS_RESULT_BACKEND": stack.redis.url,
            "EMOTIONS_WINDOW": "2",
            "EMOTIONS_CHUNK_SIZE": "2",
        }
        stack.start_worker("w1", faulty=True, FAULT_SLOW_SECONDS="0.3", **env)
        records = varied(60, "v")
        write_json(stack.input / "v.json", records)
        producer = stack.start_producer("--once", **env)
        store = JobStore(stack.redis.client(), 3600)
        book = ledger(stack, stack.input)

        def sent() -> int:
            entry = book.get("v.json")
            return int(store.meta(entry.job).get("sent", 0)) if entry else 0

        wait_for(lambda: sent() >= 4, 60, "the feed to be under way")
        broker.stop()
        at_stop = sent()
        assert at_stop < 30  # 30 chunks in all: the file was still being fed
        wait_for(lambda: "redis unavailable" in stack.log("producer"), 30, "the producer to notice")
        time.sleep(3)  # several feeds fail meanwhile
        broker.start()
        assert producer.wait(timeout=180) == 0, stack.log("producer") + stack.log("w1")
    finally:
        broker.stop()
    log = stack.log("producer")
    # One job fed to its end: no chunk was lost (a lost one would end the job as "changed").
    assert log.count("event=enqueued") == 1 and "changed while it was queued" not in log, log
    out = stack.output_records("v")
    assert [(r["id"], r["comment"]) for r in out] == [(r["id"], r["comment"]) for r in records]
    assert [r["emotion"] for r in out] == reference_labels(stack, records, 2)


def test_the_producers_output_dir_wins_and_a_missing_output_is_redone_once(
    stack: Stack,
) -> None:
    """``--output-dir`` on the producer, a results worker with another EMOTIONS_OUTPUT_DIR:
    the output lands where the producer said, and the producer finds it there. Moved away by
    a downstream job, it is made again once, then left."""
    elsewhere = stack.root / "elsewhere"
    records = comments(5, "a")
    write_json(stack.input / "a.json", records)
    stack.start_worker("w1")  # its EMOTIONS_OUTPUT_DIR is stack.output
    first = stack.run_producer("--once", "--output-dir", str(elsewhere))
    assert first.returncode == 0, first.stderr
    assert not (stack.output / "a.json").exists()
    assert [r["id"] for r in orjson.loads((elsewhere / "a.json").read_bytes())] == [
        r["id"] for r in records
    ]
    again = stack.run_producer("--once", "--output-dir", str(elsewhere))
    assert again.returncode == 0 and "event=enqueued" not in again.stderr, again.stderr
    moved = stack.root / "downstream"
    moved.mkdir()
    shutil.move(elsewhere / "a.json", moved / "a.json")
    redo = stack.run_producer("--once", "--output-dir", str(elsewhere))
    assert redo.returncode == 0, redo.stderr
    assert "event=output-missing" in redo.stderr and "making it again" in redo.stderr
    assert (elsewhere / "a.json").exists()
    shutil.move(elsewhere / "a.json", moved / "a.json")
    for _ in range(2):  # gone again: said once, not made again
        left = stack.run_producer("--once", "--output-dir", str(elsewhere))
        assert left.returncode == 0, left.stderr
        assert "event=enqueued" not in left.stderr
    assert not (elsewhere / "a.json").exists()
    logs = redo.stderr + left.stderr
    assert logs.count("event=output-missing") <= 2


def test_two_producers_on_one_redis(stack: Stack) -> None:
    """A daemon on one folder; a second producer on the same folder is refused; ``--once`` on
    another folder beside it finishes its own files, reports its own failure, and neither
    prunes nor re-submits the other's files."""
    stack.start_worker("w1")
    write_json(stack.input / "a.json", comments(4, "a"))
    daemon = stack.start_producer()
    wait_for(lambda: (stack.output / "a.json").exists(), 60, "the daemon's file")
    twin = stack.run_producer(timeout=60)
    assert twin.returncode == 2
    assert "another producer already watches" in twin.stderr, twin.stderr
    batch = stack.root / "batch"
    batch.mkdir()
    write_json(batch / "b.json", comments(6, "b"))
    (batch / "broken.json").write_text('[{"id": "x" "comment": "no comma"}]')
    once = stack.run_producer("--once", "--input-dir", str(batch))
    assert once.returncode == 1, once.stderr  # its own failure, reported
    assert (stack.failed / "broken.json").exists()
    assert_exactly_once(stack, "b", comments(6, "b"))
    time.sleep(5)  # the daemon rescans and prunes (every 2 s here) meanwhile
    assert ledger(stack, batch).get("b.json").state == DONE  # type: ignore[union-attr]
    assert ledger(stack, batch).get("broken.json").state == FAILED  # type: ignore[union-attr]
    assert ledger(stack, stack.input).get("a.json").state == DONE  # type: ignore[union-attr]
    assert stack.log("producer").count("event=enqueued") == 1  # only its own a.json
    status = stack.run_producer("status", "--input-dir", str(batch))
    assert f"folder: {batch.resolve()}" in status.stdout
    assert "1 done, 1 failed" in status.stdout, status.stdout
    assert daemon.poll() is None


def test_a_small_file_behind_a_large_one_comes_out_first(stack: Stack) -> None:
    """The big file is five windows long: a small file queued behind it would come out after
    it; fed fairly, it waits for one window at most (8 chunks of 0.2 s, against 40)."""
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="0.2")
    write_json(stack.input / "big.json", comments(8 * 40, "big"))  # 40 chunks, 8 s or more
    stack.start_producer(EMOTIONS_WINDOW="8")
    wait_for(lambda: any(marker.iterdir()), 60, "the big file's first chunk")
    arrived = time.monotonic()
    write_json(stack.input / "small.json", comments(3, "small"))
    wait_for(lambda: (stack.output / "small.json").exists(), 30, "the small file")
    assert time.monotonic() - arrived < 30
    assert not (stack.output / "big.json").exists()  # the big one was still under way
    wait_for(lambda: (stack.output / "big.json").exists(), 120, "the big file")
    assert_exactly_once(stack, "big", comments(8 * 40, "big"))


def test_a_new_file_is_not_stuck_behind_thousands_waiting(stack: Stack) -> None:
    """2,000 small files wait (rescans every 2 s find them all again); a new one dropped in
    comes out within 30 s, long before the backlog is through."""
    stack.start_worker("w1")
    for i in range(2000):
        (stack.input / f"old{i:04d}.json").write_bytes(orjson.dumps(comments(3, f"o{i}")))
    stack.start_producer()
    wait_for(lambda: any(stack.output.iterdir()), 60, "the backlog to start")
    time.sleep(4)  # two rescans of the whole folder
    arrived = time.monotonic()
    write_json(stack.input / "new.json", comments(3, "new"))
    wait_for(lambda: (stack.output / "new.json").exists(), 30, "the new file")
    assert time.monotonic() - arrived < 30
    done = len(list(stack.output.glob("old*.json")))
    assert done < 1500, done  # the backlog was still waiting
    assert_exactly_once(stack, "new", comments(3, "new"))
    log = stack.log("producer")
    assert log.count("file=old0000.json event=enqueued") == 1  # nominated and taken once
