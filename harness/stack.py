"""The whole system as real processes in temporary folders: a ``redis-server``, Celery
workers and producers, for the tests and the benchmark alike.

Nothing here mocks Redis, Celery or the filesystem. Redis runs as in production (append-only
file, no eviction); ``fsync="always"`` (the tests' choice) makes a SIGKILL of Redis lose
nothing, ``"everysec"`` is the production default the benchmark measures with. Every process
started here is stopped, by its process group, when the stack stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import redis

from harness.procs import ROOT, free_port, spawn, stop_group, wait_for

FAULTY_WORKER = ROOT / "harness" / "faulty_worker.py"
Fsync = Literal["always", "everysec", "no"]


class RedisServer:
    """A redis-server with append-only persistence in its own folder, as in production."""

    def __init__(
        self, directory: Path, password: str | None = None, fsync: Fsync = "always"
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.fsync = fsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        cmd = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.fsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ]
        return cmd + (["--requirepass", self.password] if self.password else [])

    def start(self) -> None:
        self.proc = spawn(self.command(), self.dir / "redis.log")
        # Polled often: it answers within milliseconds, and hundreds of tests start one.
        wait_for(self._pings, 10, "redis-server to accept connections", interval=0.005)

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None


@dataclass
class Folders:
    """The input, output and failed folders of one pipeline under ``root``."""

    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def failed(self) -> Path:
        return self.root / "failed"


@dataclass
class Stack(Folders):
    """Folders, model and Redis of one pipeline, and the processes started on them.

    ``env`` holds the ``EMOTIONS_*`` settings every process gets (on top of the folders,
    Redis and model); the tests use small chunks and short timers, the benchmark the
    defaults. Variables of the calling environment starting with ``EMOTIONS_`` are not
    passed on unless ``inherit`` names them, so a developer's shell cannot change a test.
    """

    redis: RedisServer
    model: Path
    device: str = "cpu"
    threads: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    inherit: tuple[str, ...] = ()
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for sub in ("input", "output", "failed", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("EMOTIONS_") or k in self.inherit
        }
        threads = str(self.threads)
        env.update(
            PYTHONPATH=str(ROOT),
            EMOTIONS_BROKER_URL=self.redis.url,
            EMOTIONS_MODEL=str(self.model),
            EMOTIONS_DEVICE=self.device,
            EMOTIONS_INPUT_DIR=str(self.input),
            EMOTIONS_OUTPUT_DIR=str(self.output),
            EMOTIONS_FAILED_DIR=str(self.failed),
            TOKENIZERS_PARALLELISM=os.environ.get("TOKENIZERS_PARALLELISM", "false"),
            OMP_NUM_THREADS=threads,
            MKL_NUM_THREADS=threads,
            HF_HUB_OFFLINE="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start_worker(
        self,
        name: str,
        *args: str,
        faulty: bool = False,
        wait: bool = True,
        timeout: float = 60,
        entry: list[str] | None = None,
        **env: str,
    ) -> subprocess.Popen[bytes]:
        """``celery -A worker worker -c 1`` (or the fault-injecting harness around it, or
        ``entry``: another program that runs the same app, such as the benchmark's)."""
        if entry is None and faulty:
            entry = [sys.executable, str(FAULTY_WORKER)]
        elif entry is None:
            entry = [sys.executable, "-m", "celery", "-A", "worker"]
        log = self.root / "logs" / f"{name}.log"
        cmd = [
            *entry,
            "worker",
            "-c",
            "1",
            "-n",
            f"{name}@%h",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            *args,
        ]
        proc = spawn(cmd, log, env=self.env(**env))
        self.procs.append(proc)
        if wait:
            wait_for(
                lambda: proc.poll() is not None or b" ready." in log.read_bytes(),
                timeout,
                f"worker {name} to be ready",
            )
            assert proc.poll() is None, self.log(name)
        return proc

    def start_producer(
        self, *args: str, name: str = "producer", **env: str
    ) -> subprocess.Popen[bytes]:
        """``python -m producer ...`` in the background (the daemon, or ``--once``)."""
        log = self.root / "logs" / f"{name}.log"
        proc = spawn([sys.executable, "-m", "producer", *args], log, env=self.env(**env))
        self.procs.append(proc)
        return proc

    def run_producer(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``python -m producer ...`` to completion, output captured."""
        return subprocess.run(
            [sys.executable, "-m", "producer", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def output_records(self, stem: str) -> list[dict[str, Any]]:
        return orjson.loads((self.output / f"{stem}.json").read_bytes())

    def stop_all(self, graceful: bool = True) -> None:
        """Stop every process started here, newest first (SIGKILL if one lingers, or at once
        unless ``graceful``: see :func:`~harness.procs.stop_group`)."""
        for proc in reversed(self.procs):
            stop_group(proc, graceful=graceful)
        self.procs.clear()


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write an input file atomically (temp name, then rename), as a careful tool would."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(orjson.dumps(records))
    tmp.rename(path)
    return path
