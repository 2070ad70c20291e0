"""Process helpers for tests, the benchmark and tools alike (no pytest needed).

Every process is started in a session of its own, so that it can be stopped together with
its children (a Celery worker and its pool child) by signalling its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in the repository root, in its own process group, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15, graceful: bool = True) -> None:
    """SIGTERM a process group, and SIGKILL it if it is still there after ``timeout``; with
    ``graceful`` false, SIGKILL it at once.

    What is left afterwards is killed too: the rest of the group once its leader is gone (a
    worker under a restart loop outlives the loop's shell, a worker that exited on its own can
    leave its pool child), and the leader's descendants that left the group (a worker's pool
    child does, see :mod:`worker.shutdown`). A test must not leave a worker behind that goes on
    taking another test's chunks.

    Not graceful is for a run that is over, whose Redis and folders go with it: a Celery
    worker's warm shutdown takes 1.5 to 3 s, which a test suite that starts a hundred workers
    pays in minutes, for nothing that it checks."""
    family = tree(proc.pid) if proc.poll() is None else []
    if proc.poll() is None and not graceful:
        kill_group(proc)
    elif proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
        except ProcessLookupError:
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MiB; 0 if it is gone.

    Read from ``/proc`` while the process runs, because ``ru_maxrss`` of a forked child
    counts the parent's pages from before ``exec``.
    """
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    """Resident memory of a live process now (VmRSS), in MiB; 0 if it is gone."""
    return _status_mib(pid, "VmRSS")


def _status_mib(pid: int, field: str) -> float:
    """A memory field of ``/proc/<pid>/status``, in MiB; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """Live child processes of ``pid`` (a Celery pool child is where the work happens)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def tree(pid: int) -> list[int]:
    """Every live descendant of ``pid``, children first."""
    found, todo = [], [pid]
    while todo:
        children = descendants(todo.pop())
        found += children
        todo += children
    return found


def tree_peak_rss_mib(pid: int) -> float:
    """Largest peak RSS of a worker's processes (its main process or its pool child)."""
    return max([peak_rss_mib(pid)] + [peak_rss_mib(c) for c in descendants(pid)])
