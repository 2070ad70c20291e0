"""Every file ends, with an exact output or a report, under everyday trouble.

Real redis-server, real Celery workers (the fault-injecting harness where a fault is needed)
and a real producer. Where a fault must strike mid-work, the test proves that work was still
unfinished when it struck.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from emotions.constants import INFERENCE_QUEUE
from harness.procs import wait_for
from harness.stack import RedisServer, Stack, write_json
from tests.services import assert_exactly_once, comments, make_stack, started_marker

pytestmark = pytest.mark.slow


def report(stack: Stack, name: str) -> dict[str, Any]:
    return orjson.loads((stack.failed / f"{name}.error.json").read_bytes())  # type: ignore[no-any-return]


def test_output_folder_unwritable_for_longer_than_celerys_retries(stack: Stack) -> None:
    stack.start_worker("w1")
    shutil.rmtree(stack.output)
    stack.output.write_text("a file where the output folder should be")
    expected = comments(10, "u")
    write_json(stack.input / "u.json", expected)
    producer = stack.start_producer("--once")
    # Celery's default of 3 retries would have given up long before the sixth failure.
    wait_for(lambda: stack.log("w1").count("cannot write output") >= 6, 60, "six failed writes")
    stack.output.unlink()
    stack.output.mkdir()
    assert producer.wait(timeout=60) == 0, stack.log("producer")
    assert_exactly_once(stack, "u", expected)


def test_more_retries_than_celerys_default_still_end_with_a_report(stack: Stack) -> None:
    stack.start_worker("w1", faulty=True, FAULT_FAIL_TEXT="POISON", EMOTIONS_MAX_RETRIES="5")
    bad = comments(4, "x")
    bad[1]["comment"] = "POISON pill"
    write_json(stack.input / "bad.json", bad)
    done = stack.run_producer("--once", timeout=120)
    assert done.returncode == 1, done.stderr
    assert report(stack, "bad.json")["retries"] == 5
    assert stack.log("w1").count("retry=") == 5


def test_hard_time_limit_fails_the_file_with_a_report(stack: Stack) -> None:
    marker = started_marker(stack)
    stack.start_worker(
        "w1",
        faulty=True,
        FAULT_STARTED_DIR=str(marker),
        FAULT_STUCK_SECONDS="60",
        EMOTIONS_TASK_TIME_LIMIT="3",
        EMOTIONS_VISIBILITY_TIMEOUT="120",
    )
    write_json(stack.input / "stuck.json", comments(4, "s"))
    begun = time.monotonic()
    done = stack.run_producer("--once", timeout=90)
    assert done.returncode == 1, done.stderr
    assert any(marker.iterdir())  # the chunk really ran, and hung
    assert "TimeLimitExceeded" in report(stack, "stuck.json")["error"]
    assert time.monotonic() - begun < 60  # not the 60 s hang, not a visibility timeout


def test_ids_come_out_exactly_as_they_went_in(stack: Stack) -> None:
    records = [
        {"id": {"__type__": "datetime", "__value__": "2020-01-01T00:00:00"}, "comment": "a"},
        {"id": {"__type__": "bytes", "__value__": "aGVsbG8="}, "comment": "b"},
        {"id": 123456789012345678901234567890, "comment": "c"},
        {"id": 2**63 + 5, "comment": "d"},
        {"id": -(2**70), "comment": "e"},
        {"id": [1, {"__type__": "x"}], "comment": "f"},
        {"id": 1.5, "comment": "g"},
        {"id": "plain", "comment": "h"},
    ]
    (stack.input / "ids.json").write_text(json.dumps(records))
    stack.start_worker("w1")
    done = stack.run_producer("--once")
    assert done.returncode == 0, done.stderr
    out = json.loads((stack.output / "ids.json").read_bytes())  # the standard parser: exact ints
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert [type(r["id"]) for r in out] == [type(r["id"]) for r in records]


def test_producer_never_dies_on_a_file(stack: Stack) -> None:
    odd = os.fsencode(stack.input) + b"/caf\xe9-latin1.json"  # not UTF-8
    with open(odd, "wb") as f:
        f.write(orjson.dumps(comments(3, "o")))
    os.symlink("loop.json", stack.input / "loop.json")  # a symlink to itself
    (stack.input / "broken.json").write_text('[{"id": "x", "comment": "unterminated')
    stack.start_worker("w1")
    producer = stack.start_producer()
    write_json(stack.input / "after.json", comments(5, "a"))
    wait_for(lambda: (stack.output / "after.json").exists(), 60, "the file after the odd ones")
    wait_for(lambda: (stack.failed / "loop.json.error.json").exists(), 30, "the loop's report")
    wait_for(
        lambda: os.path.exists(stack.output / "caf_xe9-latin1.json"),
        30,
        "the output of the non-UTF-8 name",
    )
    assert producer.poll() is None, stack.log("producer")
    assert_exactly_once(stack, "after", comments(5, "a"))
    # Still taking new files.
    write_json(stack.input / "later.json", comments(2, "l"))
    wait_for(lambda: (stack.output / "later.json").exists(), 60, "a later file")
    assert producer.poll() is None


def test_long_non_latin_names_are_shortened_by_bytes_and_kept_unique(stack: Stack) -> None:
    long_a = "日本語のとても長い動画タイトル" * 5 + "A.json"  # 231 bytes
    long_b = "日本語のとても長い動画タイトル" * 5 + "B.json"
    write_json(stack.input / long_a, comments(3, "a"))
    write_json(stack.input / long_b, comments(3, "b"))
    (stack.input / ("عنوان طويل جدا " * 9 + ".json")).write_text("[not json")
    stack.start_worker("w1")
    done = stack.run_producer("--once")
    assert done.returncode == 1, done.stderr
    outputs = sorted(stack.output.iterdir())
    assert len(outputs) == 2
    assert all(len(os.fsencode(p.name)) <= 200 for p in outputs)
    assert sorted(len(orjson.loads(p.read_bytes())) for p in outputs) == [3, 3]
    reports = list(stack.failed.glob("*.error.json"))
    assert len(reports) == 1 and "invalid JSON" in orjson.loads(reports[0].read_bytes())["error"]


def test_inputs_sharing_a_stem_get_separate_outputs(stack: Stack) -> None:
    write_json(stack.input / "a.json", comments(3, "j"))
    (stack.input / "a.csv").write_text("cid,text\nc1,hello\nc2,world\n")
    stack.start_worker("w1")
    assert stack.run_producer("--once").returncode == 0
    outputs = {p.name: orjson.loads(p.read_bytes()) for p in stack.output.iterdir()}
    assert len(outputs) == 2 and "a.json" in outputs
    assert sorted(len(v) for v in outputs.values()) == [2, 3]


def test_failed_files_never_overwrite_each_other(stack: Stack) -> None:
    for attempt in range(2):
        (stack.input / "x.json").write_text(f"[broken {attempt}")
        assert stack.run_producer("--once").returncode == 1
    assert (stack.failed / "x.json").read_text() == "[broken 0"
    assert (stack.failed / "x~2.json").read_text() == "[broken 1"
    assert (stack.failed / "x.json.error.json").exists()
    assert (stack.failed / "x~2.json.error.json").exists()


def test_a_worker_holding_another_model_hands_chunks_back(stack: Stack, xlmr_model: Path) -> None:
    stack.start_worker("wrong", EMOTIONS_MODEL=str(xlmr_model))
    expected = comments(20, "m")
    write_json(stack.input / "m.json", expected)
    producer = stack.start_producer()
    wait_for(lambda: "stops taking chunks" in stack.log("wrong"), 60, "the wrong worker to refuse")
    assert not (stack.output / "m.json").exists()
    stack.start_worker("right", EMOTIONS_MODEL=f"{stack.model}/")  # spelled differently
    wait_for(lambda: (stack.output / "m.json").exists(), 60, "the right worker")
    assert_exactly_once(stack, "m", expected)
    assert not any(stack.failed.iterdir())
    assert "ERROR" in stack.log("wrong")
    assert producer.poll() is None


def test_a_chunk_that_kills_its_worker_every_time_fails_its_file(stack: Stack) -> None:
    stack.start_worker("w1", faulty=True, FAULT_KILL_TEXT="KILLER", EMOTIONS_MAX_RETRIES="0")
    bad = comments(12, "k")
    bad[9]["comment"] = "KILLER comment"  # chunk 1
    write_json(stack.input / "bad.json", bad)
    good = comments(6, "g")
    write_json(stack.input / "good.json", good)
    done = stack.run_producer("--once", timeout=180)
    assert done.returncode == 1, done.stderr
    got = report(stack, "bad.json")
    assert got["chunk"] == 1 and "begun" in got["error"]
    assert_exactly_once(stack, "good", good)


def test_redis_down_is_said_within_seconds_and_sigterm_acts(stack: Stack) -> None:
    stack.redis.stop()
    begun = time.monotonic()
    status = stack.run_producer("status", timeout=30)
    assert status.returncode == 1 and "cannot reach Redis" in status.stderr
    assert time.monotonic() - begun < 5
    producer = stack.start_producer()
    wait_for(lambda: "redis unavailable" in stack.log("producer"), 5, "the first warning")
    wait_for(lambda: stack.log("producer").count("redis unavailable") >= 2, 15, "a second one")
    os.killpg(producer.pid, signal.SIGTERM)
    begun = time.monotonic()
    producer.wait(timeout=10)
    assert time.monotonic() - begun < 5


def test_lost_chunk_messages_are_sent_again(stack: Stack) -> None:
    marker = started_marker(stack)
    stack.start_worker("w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="1")
    expected = comments(40, "l")  # 5 chunks
    write_json(stack.input / "l.json", expected)
    producer = stack.start_producer("--once", EMOTIONS_STALL_SECONDS="3")
    wait_for(lambda: any(marker.iterdir()), 60, "a chunk to start")
    client = stack.redis.client()
    assert client.llen(INFERENCE_QUEUE) >= 2  # chunks still waiting, now lost
    client.delete(INFERENCE_QUEUE)
    assert producer.wait(timeout=90) == 0, stack.log("producer")
    assert_exactly_once(stack, "l", expected)
    assert "sent again" in stack.log("producer")


def test_redis_sigkilled_while_a_large_file_is_queued(tmp_path: Path, bert_model: Path) -> None:
    server = RedisServer(tmp_path / "redis", fsync="everysec")  # production's fsync policy
    server.start()
    stack = make_stack(tmp_path / "stack", server, bert_model, EMOTIONS_STALL_SECONDS="4")
    try:
        marker = started_marker(stack)
        stack.start_worker(
            "w1", faulty=True, FAULT_STARTED_DIR=str(marker), FAULT_SLOW_SECONDS="0.5"
        )
        expected = comments(160, "r")  # 20 chunks
        write_json(stack.input / "r.json", expected)
        producer = stack.start_producer("--once")
        wait_for(lambda: any(marker.iterdir()), 60, "a chunk to start")
        assert not (stack.output / "r.json").exists()
        server.stop(signal.SIGKILL)
        server.start()
        assert producer.wait(timeout=180) == 0, stack.log("producer")
        assert_exactly_once(stack, "r", expected)
    finally:
        stack.stop_all(graceful=False)
        server.stop()


def test_a_backlog_waits_in_a_bounded_window(stack: Stack) -> None:
    expected = comments(400, "b")  # 50 chunks of 8
    write_json(stack.input / "b.json", expected)
    producer = stack.start_producer("--once", EMOTIONS_WINDOW="3")
    client = stack.redis.client()
    wait_for(lambda: client.llen(INFERENCE_QUEUE) == 3, 30, "the window to fill")
    time.sleep(2)
    assert client.llen(INFERENCE_QUEUE) == 3  # no more while nothing finishes
    stack.start_worker("w1", EMOTIONS_WINDOW="3")
    peak = 0
    while producer.poll() is None:
        peak = max(peak, int(client.llen(INFERENCE_QUEUE)))
        time.sleep(0.05)
    assert producer.returncode == 0, stack.log("producer")
    assert peak <= 3
    assert_exactly_once(stack, "b", expected)
