"""Redis refusing writes, with real processes: it is "Redis unavailable", never fatal.

A real redis-server is made to refuse writes while it stays up: at ``maxmemory`` with
``noeviction`` (``OOM``), or with ``min-replicas-to-write 1`` and no replica (``NOREPLICAS``,
which refuses every write, BRPOP included), or with a snapshot failed because its folder is
gone (``MISCONF``, as with a full disk). Workers (prefork and threads), the producer
daemon and ``status`` meet the refusal; afterwards no process has exited, no file has failed,
and every comment comes out once with the label the same model gives its chunk.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from emotions.redisfaults import is_refusal
from emotions.settings import load_settings
from harness.procs import ROOT, free_port, spawn, wait_for
from harness.stack import RedisServer, Stack, write_json
from harness.standins import corpus
from tests.services import TEST_ENV, started_marker
from worker.inference import Engine

pytestmark = pytest.mark.slow

CHUNK = int(TEST_ENV["EMOTIONS_CHUNK_SIZE"])
REFUSAL_SECONDS = 6.0
PREFORK: tuple[str, ...] = ()
THREADS = ("-P", "threads")


class ReconfigurableRedis(RedisServer):
    """The stack's redis-server, with ``CONFIG SET dir`` allowed (a protected setting), which
    is how a test makes snapshots fail and Redis answer ``MISCONF``."""

    def command(self) -> list[str]:
        return [*super().command(), "--enable-protected-configs", "yes"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = ReconfigurableRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop(signal.SIGKILL)  # as the shared fixture does: nothing of it is read again


def bgsave_status(client: redis.Redis) -> str:
    return str(client.info("persistence")["rdb_last_bgsave_status"])


def saved(client: redis.Redis, status: str) -> bool:
    """Start a snapshot (unless one runs) and say whether the last one ended with ``status``."""
    with contextlib.suppress(redis.ResponseError):  # one in progress already
        client.bgsave()
    time.sleep(0.2)
    return bgsave_status(client) == status


def refuse(client: redis.Redis, kind: str, scratch: Path) -> None:
    """Make the server refuse writes: at maxmemory (``oom``), too few replicas
    (``noreplicas``), or a failed snapshot (``misconf``: its folder is gone)."""
    if kind == "oom":
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", max(1, used - 256 * 1024))  # at (past) maxmemory
    elif kind == "noreplicas":
        client.config_set("min-replicas-to-write", 1)
    elif kind == "readonly":  # a failover made it a replica (of a master it cannot reach)
        client.replicaof("127.0.0.1", str(free_port()))
    else:
        scratch.mkdir()
        client.config_set("save", "3600 1")  # snapshots on: their failure stops writes
        client.config_set("dir", str(scratch))
        scratch.rmdir()
        wait_for(lambda: saved(client, "err"), 20, "a snapshot to fail")
    with pytest.raises(redis.ResponseError) as refused:  # the server really refuses
        client.set("emotions:test:probe", "x" * 1024)
    assert is_refusal(refused.value)


def accept(client: redis.Redis, home: str) -> None:
    """Writes are taken again."""
    client.config_set("maxmemory", 0)
    client.config_set("min-replicas-to-write", 0)
    client.replicaof("NO", "ONE")
    if client.config_get("dir")["dir"] != home:
        client.config_set("dir", home)
        wait_for(lambda: saved(client, "ok"), 20, "a snapshot to succeed")
        client.config_set("save", "")


@contextmanager
def refusing(stack: Stack, kind: str, seconds: float = REFUSAL_SECONDS) -> Iterator[None]:
    """Redis refuses writes for ``seconds`` (and for as long as the body runs)."""
    client = stack.redis.client()
    home = str(client.config_get("dir")["dir"])
    refuse(client, kind, stack.root / "gone")
    try:
        yield
        time.sleep(seconds)
    finally:
        accept(client, home)


@pytest.fixture(scope="module")
def reference_engine(bert_model: Path) -> Engine:
    from worker.model import ModelHolder

    return ModelHolder(load_settings(model=str(bert_model), device="cpu")).engine


def records(n: int, tag: str, seed: int) -> list[dict[str, Any]]:
    """``n`` varied comments (so that their labels differ), ids naming file and position."""
    return [{"id": f"{tag}{i}", "comment": text} for i, text in enumerate(corpus(n, seed))]


def reference(engine: Engine, expected: list[dict[str, Any]]) -> list[str]:
    """Each comment's label as the same model gives it, chunk by chunk as the workers do."""
    texts = [r["comment"] for r in expected]
    return [
        label
        for i in range(0, len(texts), CHUNK)
        for label in engine.classify(texts[i : i + CHUNK])
    ]


def assert_labelled(
    stack: Stack, stem: str, expected: list[dict[str, Any]], labels: list[str]
) -> None:
    """The output holds every record once, in order, each with the reference label."""
    out = stack.output_records(stem)
    assert [(r["id"], r["comment"]) for r in out] == [(e["id"], e["comment"]) for e in expected]
    assert [r["emotion"] for r in out] == labels


def supervised_worker(stack: Stack, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """A worker under a restart loop, as compose's ``restart:`` runs it; each start is logged
    as a ``START`` line, so the test can count them."""
    worker = [sys.executable, str(ROOT / "harness" / "faulty_worker.py"), "worker", "-c", "1"]
    cmd = " ".join(
        [*worker, "-n", f"{name}@%h", "-l", "info", "--without-gossip", "--without-mingle", *args]
    )
    loop = f"while true; do echo START; {cmd}; sleep 1; done"
    log = stack.root / "logs" / f"{name}.log"
    proc = spawn(["bash", "-c", loop], log, env=stack.env(**env))
    stack.procs.append(proc)
    wait_for(lambda: b" ready." in log.read_bytes(), 90, f"worker {name} to be ready")
    return proc


def alive(*procs: subprocess.Popen[bytes]) -> bool:
    return all(p.poll() is None for p in procs)


@pytest.mark.parametrize(
    ("kind", "pool", "supervised"),
    [
        ("oom", PREFORK, False),
        ("misconf", PREFORK, False),
        ("readonly", PREFORK, False),
        ("noreplicas", PREFORK, True),
        ("oom", THREADS, True),
    ],
    ids=[
        "oom-prefork",
        "misconf-prefork",
        "readonly-prefork",
        "noreplicas-prefork-supervised",
        "oom-threads-supervised",
    ],
)
def test_a_backlog_fed_while_redis_refuses_writes_comes_out_exactly_once(
    stack: Stack, reference_engine: Engine, kind: str, pool: tuple[str, ...], supervised: bool
) -> None:
    marker = started_marker(stack)
    env = {"FAULT_STARTED_DIR": str(marker), "FAULT_SLOW_SECONDS": "0.3", "EMOTIONS_WINDOW": "6"}
    start: Callable[..., subprocess.Popen[bytes]] = (
        supervised_worker
        if supervised
        else lambda s, n, *a, **e: s.start_worker(n, *a, faulty=True, timeout=90, **e)
    )
    worker = start(stack, "w1", *pool, **env)
    files = {f"f{i}": records(64, f"f{i}-", seed=i) for i in range(3)}  # 8 chunks each
    labels = {stem: reference(reference_engine, rs) for stem, rs in files.items()}
    assert len({label for ls in labels.values() for label in ls}) > 1  # a shift would show
    for stem, rs in files.items():
        write_json(stack.input / f"{stem}.json", rs)
    producer = stack.start_producer(**env)
    wait_for(lambda: any(marker.iterdir()), 60, "the first chunk to start")
    assert not (stack.output / "f2.json").exists()  # the backlog is still being fed
    late = records(16, "late-", seed=9)  # arrives while Redis refuses: the producer meets it
    labels["late"] = reference(reference_engine, late)
    with refusing(stack, kind):
        write_json(stack.input / "late.json", late)
        wait_for(lambda: "redis unavailable" in stack.log("producer"), 30, "the producer to wait")
    files["late"] = late
    wait_for(
        lambda: (
            all((stack.output / f"{s}.json").exists() for s in files) or not alive(worker, producer)
        ),
        90,
        "every output",
    )
    logs = stack.log("producer") + stack.log("w1")
    assert alive(worker, producer), logs
    assert list(stack.failed.iterdir()) == [], logs
    for stem, rs in files.items():
        assert_labelled(stack, stem, rs, labels[stem])
    # The refusal struck the worker too: it logged it, or a chunk task (0.3 s otherwise)
    # waited it out, storing its labels or assembling the file it completed (Celery's
    # "succeeded in" is the whole task); and no process had to be started again.
    seconds = [float(t) for t in re.findall(r" succeeded in ([\d.]+)s", stack.log("w1"))]
    assert kind.upper() in stack.log("w1") or max(seconds) > REFUSAL_SECONDS / 2, logs
    assert "Unrecoverable error" not in stack.log("w1"), logs
    if supervised:
        assert stack.log("w1").count("START") == 1, logs


@pytest.mark.parametrize("pool", [PREFORK, THREADS], ids=["prefork", "threads"])
@pytest.mark.parametrize(
    ("kind", "codes"), [("noreplicas", ("NOREPLICAS",)), ("readonly", ("UNBLOCKED", "READONLY"))]
)
def test_an_idle_worker_rides_out_redis_refusing_its_brpop(
    stack: Stack, pool: tuple[str, ...], kind: str, codes: tuple[str, ...]
) -> None:
    """An idle worker waits in BRPOP. NOREPLICAS refuses BRPOP itself; a failover to a replica
    aborts it (UNBLOCKED), then refuses it (READONLY). Either way the worker's event loop
    meets the reply at once; kombu's own transport lets it out and the main process exits."""
    worker = stack.start_worker("w1", *pool, timeout=90)
    with refusing(stack, kind):
        wait_for(
            lambda: any(c in stack.log("w1") for c in codes) or worker.poll() is not None,
            30,
            "the refusal",
        )
    assert worker.poll() is None, stack.log("w1")
    expected = records(20, "a-", seed=7)
    write_json(stack.input / "a.json", expected)
    done = stack.run_producer("--once", timeout=90)
    assert done.returncode == 0, done.stderr + stack.log("w1")
    out = stack.output_records("a")
    assert [r["id"] for r in out] == [r["id"] for r in expected]
    assert worker.poll() is None and "Unrecoverable error" not in stack.log("w1")


def test_status_says_redis_is_unavailable_while_it_refuses_writes(stack: Stack) -> None:
    with refusing(stack, "noreplicas", seconds=0):
        started = time.monotonic()
        status = stack.run_producer("status", timeout=30)
        took = time.monotonic() - started
    assert status.returncode == 1, status.stdout + status.stderr
    assert "redis unavailable" in status.stderr and "NOREPLICAS" in status.stderr
    assert took < 15
    assert stack.run_producer("status", timeout=30).returncode == 0  # writes taken again
