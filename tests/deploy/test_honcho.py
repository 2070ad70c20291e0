"""``honcho start`` on the real Procfile: every process comes up, a file goes through the
split queues (chunks in ``worker``, assembly in ``results``), and Ctrl-C stops them all."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.procs import ROOT, free_port, wait_for
from harness.stack import write_json

pytestmark = pytest.mark.slow

STARTED = re.compile(r"(\w+)\.1 started \(pid=(\d+)\)")


def honcho_env(model: Path, redis_port: int, flower_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOTIONS_", "FLOWER_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        REDIS_PORT=str(redis_port),
        EMOTIONS_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        EMOTIONS_MODEL=str(model),
        EMOTIONS_DEVICE="cpu",
        EMOTIONS_CHUNK_SIZE="4",
        EMOTIONS_SETTLE_SECONDS="0.3",
        FLOWER_PORT=str(flower_port),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def test_honcho_runs_the_procfile_end_to_end(tmp_path: Path, bert_model: Path) -> None:
    app_dir = tmp_path / "app"  # honcho's working directory: data/ is created there
    app_dir.mkdir()
    redis_port, flower_port = free_port(), free_port()
    log = app_dir / "honcho.log"
    cmd = [sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile"), "-d", str(app_dir)]
    with log.open("wb") as out:
        honcho = subprocess.Popen(
            [*cmd, "start"],
            cwd=app_dir,
            env=honcho_env(bert_model, redis_port, flower_port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text() -> str:
        return log.read_text(errors="replace")

    def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
        try:
            wait_for(predicate, timeout, what)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n--- honcho output ---\n{text()[-6000:]}") from None

    try:
        ready = re.compile(r"^\S+ worker\.1 +\| .* gpu@\S+ ready\.$", re.M)
        wait(lambda: honcho.poll() is not None or ready.search(text()), 60, "the worker")
        assert honcho.poll() is None, text()
        records = [{"id": f"c{i}", "comment": f"comment number {i}"} for i in range(10)]
        (app_dir / "data" / "input").mkdir(parents=True, exist_ok=True)
        write_json(app_dir / "data" / "input" / "clip.json", records)
        output = app_dir / "data" / "output" / "clip.json"
        wait(output.exists, 60, "the output file")
        assert output.read_text().count('"emotion"') == 10

        # The Procfile's split: chunks in the inference worker, the assembly in `results`.
        lines = text().splitlines()
        chunk_line = re.compile(r"^\S+ worker\.1 +\| .*file=clip\.json chunk=(\d+) records=")
        chunks = {m.group(1) for line in lines if (m := chunk_line.match(line))}
        assert chunks == {"0", "1", "2"}, text()
        # The file is renamed into place before the results worker logs it: wait for the line.
        wait(
            lambda: any(
                "results.1" in line and "file=clip.json written=" in line
                for line in text().splitlines()
            ),
            30,
            "the results worker to log the write",
        )
        # Redis persisted with an append-only file in data/redis.
        assert (app_dir / "data" / "redis" / "appendonlydir").is_dir()
        # Flower answers, on the loopback address the Procfile gives it.
        url = f"http://127.0.0.1:{flower_port}/healthcheck"
        wait(lambda: _get(url) == b"OK", 30, "flower")
        assert f"Visit me at http://127.0.0.1:{flower_port}" in text()

        # Ctrl-C: honcho stops every process, and nothing is left behind.
        honcho.send_signal(signal.SIGINT)
        assert honcho.wait(timeout=30) is not None
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=redis_port, socket_connect_timeout=1).ping()
        started = STARTED.findall(text())
        assert {name for name, _ in started} == {"redis", "worker", "results", "producer", "flower"}
        for name, pid in started:  # each one's process group: the shell, celery, pool children
            wait_for(lambda pid=pid: not _group_alive(int(pid)), 15, f"{name} to be gone")
    finally:
        _kill_everything(honcho, log)


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read()  # type: ignore[no-any-return]
    except OSError:
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_everything(honcho: subprocess.Popen[bytes], log: Path) -> None:
    """Each Procfile process runs in its own session: kill those groups, then honcho."""
    for _, pid in STARTED.findall(log.read_text(errors="replace")):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pid), signal.SIGKILL)
    if honcho.poll() is None:
        os.killpg(honcho.pid, signal.SIGKILL)
    honcho.wait(timeout=10)
