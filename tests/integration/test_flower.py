"""Flower shows the pipeline's work: Redis, a worker, Flower and the producer as real
processes; the tasks are read back from Flower's HTTP API, behind basic auth.

Flower runs with ``--enable_events=False``: it does not switch task events on in the
workers, so whatever it shows the workers sent on their own (``worker_send_task_events``),
and any other monitor sees the same.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from emotions.constants import ASSEMBLE_TASK, CLASSIFY_TASK
from harness.procs import free_port, spawn, wait_for
from harness.stack import Stack, write_json

pytestmark = pytest.mark.slow

USER, PASSWORD = "ops", "s3cret-pass"
FILES = {"clipA.json": 20, "clipB.json": 5}  # chunks of 8: 3 and 1


class Flower:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, credentials: str | None = f"{USER}:{PASSWORD}") -> tuple[int, bytes]:
        """GET ``path`` with basic auth (``credentials=None``: none); (status, body)."""
        request = urllib.request.Request(self.base + path)
        if credentials is not None:
            token = base64.b64encode(credentials.encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)


@pytest.fixture
def flower(stack: Stack) -> Iterator[Flower]:
    """``celery -A worker flower`` as docker/compose.yaml runs it (basic auth from
    ``FLOWER_BASIC_AUTH``), on a free port."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
        "--persistent=False",
        "--enable_events=False",
    ]
    env = stack.env(FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}")
    proc = spawn(cmd, stack.root / "logs" / "flower.log", env=env)
    stack.procs.append(proc)
    client = Flower(port)

    def answers() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return client.get("/healthcheck")[0] == 200
        except OSError:
            return False

    wait_for(answers, 30, "flower to listen")
    assert proc.poll() is None, stack.log("flower")
    yield client


# One worker on every queue writes each file in the chunk task that completes it; split, a
# results worker runs an assembly task per file.
LAYOUTS = {"one-worker": {"w1": ()}, "split": {"w1": ("-Q", "inference"), "r1": ("-Q", "results")}}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_flower_api_shows_every_chunk_and_assembly_with_its_file(
    stack: Stack, flower: Flower, layout: str
) -> None:
    for name, count in FILES.items():
        write_json(
            stack.input / name,
            [{"id": f"{name}-{i}", "comment": f"nice {i}"} for i in range(count)],
        )
    for worker, queues in LAYOUTS[layout].items():
        stack.start_worker(worker, *queues)
        # Flower sees the worker through its own heartbeats before any file is sent.
        wait_for(
            lambda w=worker: (
                f'flower_worker_online{{worker="{w}@'.encode() in flower.get("/metrics")[1]
            ),
            30,
            "flower to receive the worker's events",
        )

    done = stack.run_producer("--once")
    assert done.returncode == 0, done.stderr

    expected = {name: -(-count // 8) for name, count in FILES.items()}
    split = layout == "split"
    total = sum(expected.values()) + (len(expected) if split else 0)

    def finished() -> dict[str, Any] | None:
        tasks = flower.json("/api/tasks")
        succeeded = [t for t in tasks.values() if t["state"] == "SUCCESS"]
        return tasks if len(succeeded) >= total else None

    tasks = wait_for(finished, 30, "flower to show every task as succeeded", interval=0.5)
    chunks = [t for t in tasks.values() if t["name"] == CLASSIFY_TASK]
    assemblies = [t for t in tasks.values() if t["name"].startswith(ASSEMBLE_TASK)]
    assert len(chunks) + len(assemblies) == len(tasks) == total

    # Each chunk task names its file and index in its arguments, ran on w1, and took a time;
    # its result says how many comments, and for the file's last chunk what became of it.
    seen = {name: set[int]() for name in FILES}
    completing = {}
    for task in chunks:
        match = re.fullmatch(r"\('(.+)', chunk (\d+), (\d+) comments\)", task["args"])
        assert match, task["args"]
        seen[match.group(1)].add(int(match.group(2)))
        assert task["state"] == "SUCCESS" and task["worker"].startswith("w1@")
        assert isinstance(task["runtime"], float) and task["runtime"] >= 0
        assert task["received"] and task["started"] and task["succeeded"]
        assert task["result"].startswith(f"'{match.group(3)} comments"), task["result"]
        if ";" in task["result"]:
            completing[match.group(1)] = task["result"]
    assert seen == {name: set(range(n)) for name, n in expected.items()}
    assert sorted(completing) == sorted(FILES)

    if split:
        # The assembly task says in its name which file it wrote; its result is the output.
        assert all(r.endswith("; assembly queued'") for r in completing.values()), completing
        names = sorted(t["name"] for t in assemblies)
        assert names == sorted(f"{ASSEMBLE_TASK}[{n}]" for n in FILES)
        for task in assemblies:
            name = task["name"][len(ASSEMBLE_TASK) + 1 : -1]
            assert task["state"] == "SUCCESS" and task["worker"].startswith("r1@")
            assert str(stack.output / name) in task["result"]
            assert (stack.output / name).exists()
    else:
        # Written by the chunk task that completed the file: its result is the output.
        for name, result in completing.items():
            assert result.endswith(f"; {stack.output / name}'"), result
            assert (stack.output / name).exists()

    # Filtering by task name works for the chunk tasks (what a dashboard query does).
    only_chunks = flower.json(f"/api/tasks?taskname={CLASSIFY_TASK}")
    assert set(only_chunks) == {t["uuid"] for t in chunks}


def test_flower_api_lists_the_worker_and_serves_metrics(stack: Stack, flower: Flower) -> None:
    write_json(stack.input / "clipC.json", [{"id": "x", "comment": "great"}])
    stack.start_worker("w1")
    assert stack.run_producer("--once").returncode == 0

    workers = flower.json("/api/workers?refresh=1")
    [name] = [n for n in workers if n.startswith("w1@")]
    queues = {q["name"] for q in workers[name]["active_queues"]}
    assert queues == {"inference", "results"}
    assert {CLASSIFY_TASK, ASSEMBLE_TASK} <= set(workers[name]["registered"])
    assert workers[name]["stats"]["pool"]["max-concurrency"] == 1

    assert flower.get("/metrics")[0] == 200
    wait_for(lambda: _succeeded(flower.get("/metrics")[1].decode()), 20, "succeeded-task metrics")
    metrics = flower.get("/metrics")[1].decode()
    assert re.search(r'^flower_worker_online\{worker="w1@[^"]+"\} 1\.0$', metrics, re.M), metrics
    assert re.search(
        rf'^flower_task_runtime_seconds_count\{{task="{CLASSIFY_TASK}",'
        r'worker="w1@[^"]+"\} 1\.0$',
        metrics,
        re.M,
    ), metrics


def test_flower_refuses_the_api_without_credentials(stack: Stack, flower: Flower) -> None:
    for path in ("/api/tasks", "/api/workers", "/"):
        assert flower.get(path, credentials=None)[0] == 401, path
        assert flower.get(path, credentials=f"{USER}:wrong")[0] == 401, path
    assert flower.get("/api/tasks")[0] == 200


def _succeeded(metrics: str) -> bool:
    return bool(
        re.search(
            rf'^flower_events_total\{{task="{CLASSIFY_TASK}",type="task-succeeded",', metrics, re.M
        )
    )
