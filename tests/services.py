"""Real services for tests: a redis-server on a free port, celery workers and producers as
subprocesses. Nothing here mocks Redis, Celery or the filesystem; everything runs in temp
folders and is stopped (and killed if it must be) when the test ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from harness.procs import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness" / "faulty_worker.py"


class RedisServer:
    """A redis-server with append-only persistence in its own folder, as in production."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--appendonly", "yes", "--appendfsync", "always", "--save", "",
               "--maxmemory-policy", "noeviction"]  # fmt: skip
        if self.password:
            cmd += ["--requirepass", self.password]
        self.proc = spawn(cmd, self.dir / "redis.log")
        wait_for(self._pings, 10, "redis-server to accept connections")

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
class Stack:
    """Folders, model and Redis of one pipeline, and the processes started on them."""

    root: Path
    redis: RedisServer
    model: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for sub in ("input", "output", "failed", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONS_")}
        env.update(
            PYTHONPATH=str(ROOT),
            EMOTIONS_BROKER_URL=self.redis.url,
            EMOTIONS_MODEL=str(self.model),
            EMOTIONS_DEVICE="cpu",
            EMOTIONS_INPUT_DIR=str(self.input),
            EMOTIONS_OUTPUT_DIR=str(self.output),
            EMOTIONS_FAILED_DIR=str(self.failed),
            EMOTIONS_CHUNK_SIZE="8",
            EMOTIONS_SETTLE_SECONDS="0.3",
            EMOTIONS_RESCAN_SECONDS="2",
            EMOTIONS_RETRY_BACKOFF_MAX="1",
            TOKENIZERS_PARALLELISM="false",
            OMP_NUM_THREADS="1",
            HF_HUB_OFFLINE="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start_worker(
        self, name: str, *args: str, faulty: bool = False, wait: bool = True, **env: str
    ) -> subprocess.Popen[bytes]:
        """``celery -A worker worker -c 1`` (or the fault-injecting harness around it)."""
        entry = [sys.executable, str(HARNESS)] if faulty else [sys.executable, "-m", "celery",
                                                                "-A", "worker"]  # fmt: skip
        log = self.root / "logs" / f"{name}.log"
        cmd = [*entry, "worker", "-c", "1", "-n", f"{name}@%h", "-l", "info",
               "--without-gossip", "--without-mingle", *args]  # fmt: skip
        proc = spawn(cmd, log, env=self.env(**env))
        self.procs.append(proc)
        if wait:
            wait_for(lambda: proc.poll() is not None or b" ready." in log.read_bytes(), 60,
                     f"worker {name} to be ready")  # fmt: skip
            assert proc.poll() is None, self.log(name)
        return proc

    def start_producer(
        self, *args: str, name: str = "producer", **env: str
    ) -> subprocess.Popen[bytes]:
        log = self.root / "logs" / f"{name}.log"
        proc = spawn([sys.executable, "-m", "producer", *args], log, env=self.env(**env))
        self.procs.append(proc)
        return proc

    def run_producer(
        self, *args: str, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "producer", *args], cwd=ROOT, env=self.env(**env),
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def output_records(self, stem: str) -> list[dict[str, Any]]:
        return orjson.loads((self.output / f"{stem}.json").read_bytes())  # type: ignore[no-any-return]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    with_kill(proc)
        self.procs.clear()


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group (so it can be killed whole), output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def with_kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write an input file atomically (temp name, then rename), as a careful tool would."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(orjson.dumps(records))
    tmp.rename(path)
    return path
