"""Command-line flags win over the environment in the producer, end to end.

The producer once borrowed the workers' Celery app, whose configuration was built from the
environment alone: with ``EMOTIONS_BROKER_URL`` invalid and ``--broker-url`` valid, it logged
its settings, created the job, then exited 2 at the first chunk. Here a real producer process
must publish the chunks of a real file to the Redis named by the flag.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from emotions.constants import INFERENCE_QUEUE
from harness.procs import ROOT, wait_for
from harness.stack import RedisServer, Stack

pytestmark = pytest.mark.slow


def test_flags_win_over_the_environment_in_every_part_of_the_producer(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    folders = {sub: tmp_path / sub for sub in ("input", "output", "failed")}
    for folder in folders.values():
        folder.mkdir()
    (folders["input"] / "a.json").write_bytes(
        orjson.dumps([{"id": str(i), "comment": f"c{i}"} for i in range(5)])
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        EMOTIONS_BROKER_URL="http://not-redis.invalid",
        EMOTIONS_MODEL="from/the-environment",
        EMOTIONS_CHUNK_SIZE="not a number",
    )
    flags = ["--broker-url", redis_server.url, "--model", "from/the-flag", "--chunk-size", "2"]
    flags += [f"--{name}-dir={folder}" for name, folder in folders.items()]
    log = tmp_path / "producer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "producer", *flags],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = redis_server.client()
    try:
        wait_for(
            lambda: client.llen(INFERENCE_QUEUE) == 3 or proc.poll() is not None,
            30,
            "the chunks on the flag's Redis",
        )
        assert proc.poll() is None, log.read_text()
        message = orjson.loads(client.lindex(INFERENCE_QUEUE, -1))  # the oldest
        args = orjson.loads(base64.b64decode(message["body"]))[0]
        assert args[3] == "hub:from/the-flag@main"  # the model identity given by the flag
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        client.close()
    assert "invalid settings" not in log.read_text()


def test_a_workers_log_level_flag_wins_over_the_environment(tmp_path: Path) -> None:
    """``-l info`` (the harness passes it) with ``EMOTIONS_LOG_LEVEL=WARNING``: the flag
    decides, so the worker's INFO lines (its settings, "ready") are in its log."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    stack = Stack(tmp_path, redis, tmp_path / "unused-model")  # a results worker loads none
    try:
        stack.start_worker("results", "-Q", "results", EMOTIONS_LOG_LEVEL="WARNING")
        wait_for(lambda: "worker settings" in stack.log("results"), 10, "the INFO settings line")
    finally:
        stack.stop_all(graceful=False)
        redis.stop()
