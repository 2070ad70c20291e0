"""Ctrl-C on ``honcho start`` while a chunk is running: nothing is lost and nothing waits.

honcho SIGTERMs every process at the same instant and SIGKILLs 5 s later. The Procfile's
processes must sort that out themselves: the worker hands the unfinished chunk back to its
queue, Redis stays up until its clients are gone and then shuts down cleanly, every process
exits on its own with no traceback, and the next ``honcho start`` finishes the file at once,
not after ``EMOTIONS_VISIBILITY_TIMEOUT`` (900 s here, so waiting for it fails the test).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import orjson
import pytest

from harness.procs import free_port
from harness.stack import RedisServer, write_json
from tests.deploy.honcho_run import HONCHO_KILL_WAIT, Honcho, honcho_env, http_get

pytestmark = pytest.mark.slow

PROCESSES = ("redis", "worker", "results", "producer", "flower")
# Chunks of long comments that take the 2-layer test model several seconds each on one CPU
# thread (about 500 comments/s at 512 tokens), well beyond the worker's 2 s stop grace (the
# byte bound of a chunk is lifted, or it would cut these long comments into small chunks).
CHUNK = 4000
FLOWER_AUTH = "tester:not-a-real-password"
LONG = " ".join(["This video made my day, thank you so much!"] * 60)


def test_ctrl_c_mid_chunk_hands_it_back_and_redis_stops_last(
    tmp_path: Path, bert_model: Path
) -> None:
    flower_port = free_port()
    env = honcho_env(
        bert_model,
        free_port(),
        flower_port,
        FLOWER_BASIC_AUTH=FLOWER_AUTH,
        EMOTIONS_CHUNK_SIZE=str(CHUNK),
        EMOTIONS_CHUNK_BYTES=str(1 << 30),
        EMOTIONS_VISIBILITY_TIMEOUT="900",
    )
    honcho = Honcho(tmp_path / "app", env)
    data = honcho.app_dir / "data"
    output = data / "output" / "big.json"
    records = [{"id": f"b{i}", "comment": f"{i} {LONG}"} for i in range(2 * CHUNK)]
    finished = re.compile(r"file=big\.json chunk=(\d+) records=")
    honcho.start()
    try:
        honcho.wait_ready()
        (data / "input").mkdir(parents=True, exist_ok=True)
        write_json(data / "input" / "big.json", records)
        # The pool child started the chunk: its task-started event, as Flower shows it.
        running = (
            f"http://127.0.0.1:{flower_port}/api/tasks"
            "?taskname=emotions.classify_chunk&state=STARTED"
        )
        honcho.wait(
            lambda: json.loads(http_get(running, FLOWER_AUTH)[1] or b"{}"), 90, "a chunk to start"
        )
        assert not output.exists()
        seconds = honcho.interrupt()

        text = honcho.text()
        worker = honcho.lines("worker")
        # The stop struck mid-chunk: the chunk never finished, and was still running when the
        # worker's grace ran out, so it was handed back.
        assert not any(finished.search(line) for line in worker), text
        assert any("handing 1 unfinished task(s) back to the queue" in line for line in worker)
        # Every process exited on its own, before honcho's SIGKILL, and cleanly.
        assert "SIGKILL" not in text and seconds < HONCHO_KILL_WAIT + 3, (seconds, text)
        for name in PROCESSES:
            assert f"{name}.1 stopped (rc=0)" in text, text
        for noise in ("Traceback", "WorkerLostError", "ERROR/"):
            assert noise not in text, text
        # Redis went last: its clients were gone before it shut down, after the hand-back.
        handed_back = honcho.index(r" worker\.1 +\| .*handing 1 unfinished")
        assert 0 < handed_back < honcho.index(r" redis\.1 +\| redis-stops-last: no clients left")
        assert handed_back < honcho.index(r" redis\.1 +\| .*Received SIGTERM")
        assert "Redis is now ready to exit" in text

        # What Redis saved: both chunks queued, none waiting unacknowledged for the timeout.
        saved = RedisServer(data / "redis")
        saved.start()
        try:
            client = saved.client()
            assert (client.llen("inference"), client.hlen("unacked")) == (2, 0)
        finally:
            saved.stop()

        # Start again: the file completes at once, every record exactly once, in order.
        started = time.monotonic()
        honcho.start()
        honcho.wait(output.exists, 240, "the output after the restart")
        assert time.monotonic() - started < 300  # the visibility timeout is 900 s
        out = orjson.loads(output.read_bytes())
        assert [(r["id"], r["comment"]) for r in out] == [(r["id"], r["comment"]) for r in records]
        done = {m.group(1) for line in honcho.lines("worker") if (m := finished.search(line))}
        assert done == {"0", "1"}
        honcho.interrupt()
        assert "SIGKILL" not in honcho.text()
    finally:
        honcho.kill_everything()
