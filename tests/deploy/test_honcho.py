"""``honcho start`` on the real Procfile: every process comes up, a file goes through the
split queues (chunks in ``worker``, assembly in ``results``), Flower shows the chunks with
their arguments and serves its API to credentials, and Ctrl-C stops them all within honcho's
grace, with no traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from harness.procs import free_port, wait_for
from harness.stack import write_json
from tests.deploy.honcho_run import (
    HONCHO_KILL_WAIT,
    Honcho,
    alive,
    group_alive,
    honcho_env,
    http_get,
)

pytestmark = pytest.mark.slow

FLOWER_AUTH = "tester:not-a-real-password"


def test_honcho_runs_the_procfile_end_to_end(tmp_path: Path, bert_model: Path) -> None:
    redis_port, flower_port = free_port(), free_port()
    env = honcho_env(bert_model, redis_port, flower_port, FLOWER_BASIC_AUTH=FLOWER_AUTH)
    honcho = Honcho(tmp_path / "app", env)
    data = honcho.app_dir / "data"
    honcho.start()
    try:
        honcho.wait_ready()
        records = [{"id": f"c{i}", "comment": f"comment number {i}"} for i in range(10)]
        (data / "input").mkdir(parents=True, exist_ok=True)
        write_json(data / "input" / "clip.json", records)
        output = data / "output" / "clip.json"
        honcho.wait(output.exists, 60, "the output file")
        assert output.read_text().count('"emotion"') == 10

        # The Procfile's split: chunks in the inference worker, the assembly in `results`.
        chunk_line = re.compile(r"file=clip\.json chunk=(\d+) records=")
        chunks = {m.group(1) for line in honcho.lines("worker") if (m := chunk_line.search(line))}
        assert chunks == {"0", "1", "2"}, honcho.text()
        # The file is renamed into place before the results worker logs it: wait for the line.
        honcho.wait(
            lambda: any("file=clip.json written=" in line for line in honcho.lines("results")),
            30,
            "the results worker to log the write",
        )
        # Redis persisted with an append-only file in data/redis.
        assert (data / "redis" / "appendonlydir").is_dir()

        flower = f"http://127.0.0.1:{flower_port}"
        honcho.wait(lambda: http_get(f"{flower}/healthcheck") == (200, b"OK"), 30, "flower")
        assert f"Visit me at {flower}" in honcho.text()  # the loopback address of the Procfile
        # The API answers credentials, and only them.
        assert http_get(f"{flower}/api/workers")[0] == 401
        workers = f"{flower}/api/workers?refresh=1"
        honcho.wait(lambda: b'"gpu@' in http_get(workers, FLOWER_AUTH)[1], 30, "the API")
        # The task list shows each chunk's file and index (Procfile: FLOWER_TASKS_COLUMNS).
        status, page = http_get(f"{flower}/tasks", FLOWER_AUTH)
        assert status == 200 and b'<th data-column="args">' in page
        status, body = http_get(f"{flower}/api/tasks?taskname=emotions.classify_chunk", FLOWER_AUTH)
        shown = {task["args"] for task in json.loads(body).values()}
        assert "('clip.json', chunk 0, 4 comments)" in shown, shown

        # Ctrl-C: every process stops on its own, before honcho's SIGKILL; nothing is left.
        processes = honcho.processes()
        assert len(processes) >= 7  # five, and a pool child per worker
        seconds = honcho.interrupt()
        assert "SIGKILL" not in honcho.text(), honcho.text()[-6000:]
        assert seconds < HONCHO_KILL_WAIT + 3, seconds
        assert "Traceback" not in honcho.text(), honcho.text()[-6000:]
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=redis_port, socket_connect_timeout=1).ping()
        started = honcho.started()
        assert {name for name, _ in started} == {"redis", "worker", "results", "producer", "flower"}
        for name, pid in started:  # each one's process group
            wait_for(lambda pid=pid: not group_alive(pid), 15, f"{name} to be gone")
        wait_for(lambda: not any(alive(pid) for pid in processes), 15, "every process to be gone")
    finally:
        honcho.kill_everything()
