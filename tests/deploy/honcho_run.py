"""``honcho start`` on the real Procfile in a temporary app folder, as a user runs it.

The app folder stands in for a checkout: ``data/`` is created there, and ``scripts/`` links to
the repository's, because the Procfile names ``scripts/redis-stops-last.sh`` relative to it.
Each Procfile process runs in a session of its own (honcho's choice), so Ctrl-C, which the
terminal sends to honcho's process group only, is :meth:`Honcho.interrupt`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from harness.procs import ROOT, descendants, wait_for

STARTED = re.compile(r"(\w+)\.1 started \(pid=(\d+)\)")
# honcho kills what is left this long after the first process of a stop has exited.
HONCHO_KILL_WAIT = 5.0


def honcho_env(model: Path, redis_port: int, flower_port: int, **extra: str) -> dict[str, str]:
    """The caller's environment without ``EMOTIONS_*``/``FLOWER_*``, plus the run's settings."""
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
    env.update(extra)
    return env


class Honcho:
    """One ``honcho start`` at a time in ``app_dir``; each run logs to its own file."""

    def __init__(self, app_dir: Path, env: dict[str, str]) -> None:
        self.app_dir = app_dir
        self.env = env
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = app_dir / "honcho-0.log"
        app_dir.mkdir(parents=True, exist_ok=True)
        (app_dir / "scripts").symlink_to(ROOT / "scripts")

    def start(self) -> None:
        self.runs += 1
        self.log = self.app_dir / f"honcho-{self.runs}.log"
        cmd = [
            sys.executable,
            "-m",
            "honcho",
            "-f",
            str(ROOT / "Procfile"),
            "-d",
            str(self.app_dir),
            "start",
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.app_dir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self, name: str) -> list[str]:
        """What process ``name`` (``worker``, ``redis``, ``system``...) printed, in order."""
        mark = re.compile(rf"^\S+ {re.escape(name)}(\.1)? +\| ?(.*)$")
        return [m.group(2) for line in self.text().splitlines() if (m := mark.match(line))]

    def index(self, pattern: str) -> int:
        """Position of the first output line matching ``pattern`` (-1 if none)."""
        found = re.compile(pattern)
        return next(
            (i for i, line in enumerate(self.text().splitlines()) if found.search(line)), -1
        )

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Like ``wait_for``, failing with honcho's output; and fast if honcho itself exits."""
        assert self.proc is not None
        proc = self.proc
        try:
            wait_for(lambda: predicate() or proc.poll() is not None, timeout, what)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n--- honcho output ---\n{self.text()[-6000:]}") from None
        assert proc.poll() is None or predicate(), f"honcho exited\n{self.text()[-6000:]}"

    def wait_ready(self, timeout: float = 90) -> None:
        ready = re.compile(r"^\S+ worker\.1 +\| .* gpu@\S+ ready\.$", re.M)
        self.wait(lambda: ready.search(self.text()), timeout, "the inference worker")

    def interrupt(self, timeout: float = 30) -> float:
        """Ctrl-C: SIGINT to honcho's process group; seconds until honcho has exited."""
        assert self.proc is not None
        start = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - start

    def started(self) -> list[tuple[str, int]]:
        return [(name, int(pid)) for name, pid in STARTED.findall(self.text())]

    def processes(self) -> set[int]:
        """Every live process of the run: the Procfile's and all their descendants (pool
        children included, which leave their worker's process group)."""
        found: set[int] = set()
        todo = [pid for _, pid in self.started()]
        while todo:
            pid = todo.pop()
            if pid not in found and Path(f"/proc/{pid}").exists():
                found.add(pid)
                todo.extend(descendants(pid))
        return found

    def kill_everything(self) -> None:
        """Each Procfile process runs in its own session: kill those groups, then honcho."""
        for _, pid in self.started():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def http_get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    """Status and body of a GET (status 0 if nothing answers)."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""
