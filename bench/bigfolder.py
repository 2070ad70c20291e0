"""A big folder of small files: producer memory, files per second, and a new file's wait.

``python -m bench.bigfolder --files 100000`` writes that many files of three comments each
(one file per video of a channel) into the input folder, starts Redis (append-only,
``appendfsync everysec``, as in the ``Procfile``), one ``celery -A worker worker -c 1`` and
the producer daemon with default settings except the rescan period (``--rescan``), drops a
new file into the folder after ``--drop-after`` seconds, and runs until every file is out or
``--minutes`` have passed. It reports the producer's resident memory (now and peak), its CPU
use, files out per second, and how long the new file took to come out.

The stand-in model is the tiny one: what is measured is the producer, and how it shares the
workers between a backlog and a new file; a CPU would need hours with the real model.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import orjson

from bench.e2e import CACHE
from harness.procs import peak_rss_mib, rss_mib, wait_for
from harness.stack import RedisServer, Stack, write_json

SAMPLE_SECONDS = 2.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _outputs(folder: Path) -> int:
    with os.scandir(folder) as it:
        return sum(1 for e in it if e.name.endswith(".json") and not e.name.startswith("."))


def measure(
    model: Path, files: int, drop_after: float, minutes: float, rescan: float
) -> dict[str, float]:
    """Run the folder; the figures (see the module's docstring)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="bigfolder-") as tmp:
        root = Path(tmp)
        server = RedisServer(root / "redis", fsync="everysec")
        server.start()
        stack = Stack(root, server, model, extra_env={"EMOTIONS_RESCAN_SECONDS": str(rescan)})
        try:
            for i in range(files):
                records = [
                    {"id": f"v{i}c{k}", "comment": f"video {i} comment {k} 👍"} for k in range(3)
                ]
                (stack.input / f"video{i:06d}.json").write_bytes(orjson.dumps(records))
            stack.start_worker("w1", timeout=300)
            producer = stack.start_producer()
            started = time.monotonic()
            wait_for(lambda: _outputs(stack.output) > 0, 600, "the first output")
            rss_peak_seen = dropped = new_wait = 0.0
            out_at_drop = 0
            deadline = started + minutes * 60
            while time.monotonic() < deadline:
                now = time.monotonic()
                rss_peak_seen = max(rss_peak_seen, rss_mib(producer.pid))
                if not dropped and now - started >= drop_after:
                    out_at_drop = _outputs(stack.output)
                    write_json(stack.input / "new-video.json", [{"id": "n", "comment": "new!"}])
                    dropped = time.monotonic()
                if dropped and not new_wait and (stack.output / "new-video.json").exists():
                    new_wait = time.monotonic() - dropped
                done = _outputs(stack.output)
                if done >= files + 1 or producer.poll() is not None:
                    break
                time.sleep(SAMPLE_SECONDS)
            elapsed = time.monotonic() - started
            done = _outputs(stack.output)
            result = {
                "files": float(files),
                "files_out": float(done),
                "seconds": elapsed,
                "files_per_s": done / elapsed,
                "producer_rss_mib_end": rss_mib(producer.pid),
                "producer_rss_mib_peak": max(rss_peak_seen, peak_rss_mib(producer.pid)),
                "producer_cpu_percent": 100 * cpu_seconds(producer.pid) / elapsed,
                "outputs_when_new_file_dropped": float(out_at_drop),
                "new_file_wait_s": new_wait if new_wait else float("nan"),
            }
        finally:
            stack.stop_all()
            server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bigfolder", description=__doc__)
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--drop-after", type=float, default=60.0, help="seconds before the new file")
    p.add_argument("--minutes", type=float, default=30.0, help="stop after this long")
    p.add_argument("--rescan", type=float, default=10.0, help="EMOTIONS_RESCAN_SECONDS")
    args = p.parse_args(argv)
    from bench.run import ensure_model

    result = measure(ensure_model("tiny"), args.files, args.drop_after, args.minutes, args.rescan)
    for key, value in result.items():
        print(f"{key}: {value:,.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
