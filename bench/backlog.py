"""Redis memory while a large backlog waits for workers and then drains through one.

``python -m bench.backlog --comments 1000000`` writes one youtube-comment-downloader JSON
Lines file of that many comments, starts Redis (append-only, ``appendfsync everysec``, as in
the ``Procfile``) and ``producer --once`` with default settings and no worker, samples Redis's
``used_memory`` while the backlog waits, then starts one ``celery -A worker worker -c 1`` and
samples again until every comment is out. It checks the output holds every comment exactly
once, in order.

Why the tiny stand-in model: what is measured is Redis, which does not depend on the model;
a CPU would need hours to run the real one over a million comments.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from bench.corpus import records
from bench.e2e import CACHE
from harness.procs import wait_for
from harness.stack import RedisServer, Stack

MIB = 1024 * 1024


def _write(path: Path, n: int, seed: int) -> None:
    with path.open("wb") as f:
        for r in records(n, seed):
            f.write(orjson.dumps({"cid": r["id"], "text": r["comment"]}) + b"\n")


def _check(path: Path, n: int) -> None:
    """Every comment once, in order (``c0``, ``c1``, ...), read without loading the file."""
    expected = 0
    with path.open("rb") as f:
        for line in f:
            line = line.strip().rstrip(b",")
            if line in (b"[", b"]", b""):
                continue
            rid = orjson.loads(line)["id"]
            if rid != f"c{expected}":
                raise RuntimeError(f"output record {expected} has id {rid!r}")
            expected += 1
    if expected != n:
        raise RuntimeError(f"the output holds {expected} records, not {n}")


def measure(model: Path, n: int, seed: int, wait: float) -> dict[str, float]:
    """Run the backlog; Redis memory figures in MiB and the phases' seconds."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="backlog-") as tmp:
        root = Path(tmp)
        server = RedisServer(root / "redis", fsync="everysec")
        server.start()
        stack = Stack(root, server, model)  # default settings: window, chunk size, TTLs
        try:
            _write(stack.input / "backlog.jsonl", n, seed)
            client = server.client()
            baseline = int(client.info("memory")["used_memory"])
            started = time.monotonic()
            producer = stack.start_producer("--once", "--no-progress")
            wait_for(lambda: client.llen("inference") > 0, 600, "the first chunks")
            queued_after = time.monotonic() - started
            waiting = 0
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                waiting = max(waiting, int(client.info("memory")["used_memory"]))
                time.sleep(0.2)
            stack.start_worker("w1", timeout=300)
            draining, began = 0, time.monotonic()
            while producer.poll() is None:
                draining = max(draining, int(client.info("memory")["used_memory"]))
                time.sleep(0.2)
            if producer.returncode != 0:
                raise RuntimeError(f"producer --once failed; see {root / 'logs'}")
            drained = time.monotonic() - began
            _check(stack.output / "backlog.json", n)
            peak = int(client.info("memory")["used_memory_peak"])
        finally:
            stack.stop_all()
            server.stop()
    return {
        "comments": n,
        "baseline_mib": baseline / MIB,
        "waiting_mib": waiting / MIB,
        "draining_mib": draining / MIB,
        "redis_peak_mib": peak / MIB,
        "first_chunk_s": queued_after,
        "drain_s": drained,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__)
    p.add_argument("--comments", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait", type=float, default=20.0, help="seconds the backlog waits")
    args = p.parse_args(argv)
    from bench.run import ensure_model

    result = measure(ensure_model("tiny"), args.comments, args.seed, args.wait)
    for key, value in result.items():
        print(f"{key}: {value:,.1f}" if isinstance(value, float) else f"{key}: {value:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
