"""The distributed path, measured as a user runs it: redis-server, ``celery -A worker worker
-c 1`` and ``python -m producer --once`` as real processes, on the shared harness
(:mod:`harness.stack`).

Redis runs as in the ``Procfile`` (append-only, ``appendfsync everysec``), not with the
tests' fsync-always; every process gets the same thread counts for a fair comparison with
the engine in process, and the engine's knobs pass through from the caller's environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from harness.procs import ROOT, peak_rss_mib, tree_peak_rss_mib
from harness.stack import RedisServer, Stack

CACHE = ROOT / "bench" / ".cache"  # gitignored: stand-in models and run folders
ENGINE_KNOBS = ("EMOTIONS_BATCH_SIZE", "EMOTIONS_TOKEN_BUDGET", "EMOTIONS_MAX_LENGTH")

__all__ = ["CACHE", "ENGINE_KNOBS", "BenchStack", "tree_peak_rss_mib"]


class BenchStack:
    """A redis-server and ``-c 1`` workers in ``root``; the producer is run and timed here."""

    def __init__(self, root: Path, model: Path, device: str, threads: int) -> None:
        self.root = root
        self.redis = RedisServer(root / "redis", fsync="everysec")
        self.stack = Stack(root, self.redis, model, device, threads, inherit=ENGINE_KNOBS)

    def start(
        self,
        queues: Iterable[str | None] = (None,),
        entry: list[str] | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> list[subprocess.Popen[bytes]]:
        """Start redis and one ``-c 1`` worker per entry of ``queues`` (None: every queue);
        ``entry`` runs instead of ``celery -A worker``, ``env`` goes to every process, ``args``
        are added to each worker's command line."""
        self.stack.extra_env.update(env or {})
        self.redis.start()
        return [
            self.stack.start_worker(
                f"w{i}-{q or 'all'}", *(["-Q", q] if q else []), *args, timeout=300, entry=entry
            )
            for i, q in enumerate(queues)
        ]

    def producer(
        self,
        records: Iterable[dict[str, Any]],
        name: str,
        chunk_size: int,
        jsonl: bool = False,
        timeout: float = 3600,
    ) -> tuple[float, float]:
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
        cmd = [
            sys.executable,
            "-m",
            "producer",
            "--once",
            "--no-progress",
            "--chunk-size",
            str(chunk_size),
            "--input-dir",
            str(folder),
        ]
        with (self.root / "logs" / f"producer-{name}.log").open("wb") as out:
            start = time.perf_counter()
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.stack.env(), stdout=out, stderr=subprocess.STDOUT
            )
            status, peak = self._wait(proc.pid, timeout)
            seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by _wait, not by Popen
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"producer --once failed on {name}; see {out.name}")
        return seconds, peak

    def _wait(self, pid: int, timeout: float) -> tuple[int, float]:
        """Wait for the producer, polling its peak RSS; fail if a worker or redis died."""
        deadline, peak = time.monotonic() + timeout, 0.0
        procs = [*self.stack.procs, *([self.redis.proc] if self.redis.proc else [])]
        while True:
            peak = max(peak, peak_rss_mib(pid))
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status, peak
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
                raise RuntimeError(f"a worker or redis died, or the producer hung; see {self.root}")
            time.sleep(0.01)

    def output(self, name: str) -> list[dict[str, Any]]:
        """The records of an output file."""
        return self.stack.output_records(name)

    def stop(self) -> None:
        """Stop the workers, then Redis."""
        self.stack.stop_all()
        self.redis.stop()
