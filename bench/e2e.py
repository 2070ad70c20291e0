"""The distributed path, measured as a user runs it: redis-server, ``celery -A worker worker
-c 1`` and ``python -m producer --once`` as real processes.

Why not reuse the test helpers: the benchmark must run from a fresh clone without pytest,
and it needs things tests do not (equal thread settings for a fair comparison, per-process
peak RSS from ``/proc``). Redis runs as in the ``Procfile`` (append-only, no
eviction), not with the tests' fsync-always. Every process is started in its own session and
stopped by its own process group at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from harness.procs import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"  # gitignored: stand-in models and run folders
ENGINE_KNOBS = ("EMOTIONS_BATCH_SIZE", "EMOTIONS_TOKEN_BUDGET", "EMOTIONS_MAX_LENGTH")


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
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


class Stack:
    """A redis-server and Celery workers in ``root``; the producer runs against them."""

    def __init__(self, root: Path, model: Path, device: str, threads: int) -> None:
        self.root = root
        self.model = model
        self.device = device
        self.threads = threads
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        for sub in ("redis", "output", "failed", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every process: same model, device and thread counts."""
        # The engine's knobs pass through, so the worker batches as the in-process engine does.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("EMOTIONS_") or k in ENGINE_KNOBS}  # fmt: skip
        env.update(
            PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
            OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads),
            TOKENIZERS_PARALLELISM=os.environ.get("TOKENIZERS_PARALLELISM", "false"),
            EMOTIONS_BROKER_URL=f"redis://127.0.0.1:{self.port}/0",
            EMOTIONS_MODEL=str(self.model), EMOTIONS_DEVICE=self.device,
            EMOTIONS_OUTPUT_DIR=str(self.root / "output"),
            EMOTIONS_FAILED_DIR=str(self.root / "failed"),
        )  # fmt: skip
        env.update(extra)
        return env

    def _spawn(self, cmd: list[str], name: str) -> subprocess.Popen[bytes]:
        with (self.root / "logs" / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.procs.append(proc)
        return proc

    def start(self, queues: Iterable[str | None] = (None,)) -> list[subprocess.Popen[bytes]]:
        """Start redis and one ``-c 1`` worker per entry of ``queues`` (None: every queue)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._spawn([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--dir", str(self.root / "redis"), "--appendonly", "yes",
                     "--maxmemory-policy", "noeviction"], "redis")  # fmt: skip
        workers = []
        for i, queue in enumerate(queues):
            name = f"w{i}-{queue or 'all'}"
            cmd = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-c", "1", "-n",
                   f"{name}@%h", "-l", "info", "--without-gossip", "--without-mingle"]  # fmt: skip
            workers.append(self._spawn(cmd + (["-Q", queue] if queue else []), name))
            log = self.root / "logs" / f"{name}.log"
            wait_for(lambda: b" ready." in log.read_bytes(), 300, f"worker {name}")  # noqa: B023
        return workers

    def producer(self, records: Iterable[dict[str, Any]], name: str, chunk_size: int,
                 jsonl: bool = False, timeout: float = 3600) -> tuple[float, float]:  # fmt: skip
        """Write ``records`` to a fresh input folder, run ``producer --once`` on it.

        Returns (wall seconds from producer start to exit, the producer's peak RSS in MiB).
        The file is written before the clock starts; the producer's own start-up is timed.
        """
        folder = self.root / f"input-{name}"
        folder.mkdir()
        path = folder / f"{name}.{'jsonl' if jsonl else 'json'}"
        with path.open("wb") as f:
            if jsonl:
                for r in records:
                    f.write(orjson.dumps({"cid": r["id"], "text": r["comment"]}) + b"\n")
            else:
                f.write(orjson.dumps(list(records)))
        cmd = [sys.executable, "-m", "producer", "--once", "--no-progress",
               "--chunk-size", str(chunk_size), "--input-dir", str(folder)]  # fmt: skip
        with (self.root / "logs" / f"producer-{name}.log").open("wb") as out:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
            status, peak = self._wait(proc.pid, timeout)
            seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"producer --once failed on {name}; see {out.name}")
        return seconds, peak

    def _wait(self, pid: int, timeout: float) -> tuple[int, float]:
        """Wait for the producer, polling its peak RSS; fail if a worker or redis died.

        ``VmHWM`` is read while it runs because ``ru_maxrss`` of a forked child counts the
        parent's pages from before ``exec`` (here: the benchmark's loaded models).
        """
        deadline, peak = time.monotonic() + timeout, 0.0
        while True:
            peak = max(peak, peak_rss_mib(pid))
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status, peak
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
                raise RuntimeError(f"a worker or redis died, or the producer hung; see {self.root}")
            time.sleep(0.01)

    def output(self, name: str) -> list[dict[str, Any]]:
        """The records of an output file."""
        return orjson.loads((self.root / "output" / f"{name}.json").read_bytes())

    def stop(self) -> None:
        """SIGTERM every process group started here (SIGKILL if it lingers)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
        self.procs.clear()


def tree_peak_rss_mib(pid: int) -> float:
    """Largest peak RSS of a worker's processes (its main process or its pool child)."""
    return max([peak_rss_mib(pid)] + [peak_rss_mib(c) for c in descendants(pid)])
