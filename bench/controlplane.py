"""``python -m bench.controlplane``: what the control plane costs per comment, and per file.

The control plane is everything but the GPU: the producer (``producer --once``: check pass,
job, send pass), the results worker (``celery -A worker worker -Q results``: the assembly)
and Redis. To measure it alone the inference side is ``N`` null workers
(:mod:`bench.null_worker`: the production worker and task, with an engine that labels at
once), so the rate is bounded by the control plane only.

For a large file of each real format (:mod:`bench.inputs`) it reports the CPU seconds per
comment of each process, read from ``/proc`` (the producer's from ``wait4``, less its start-up
measured on a folder of one one-comment file; the workers' and Redis's less their idle rate),
and the sustained end-to-end rate (comments over the producer's wall time, start to last
output).
CPU time, not wall time, is the figure that matters: the machine may be shared.

The small-files mode writes thousands of 3-comment files (one file per video is the common
layout) and runs them through one worker on every queue with the tiny stand-in model: files
per second, the CPU per file of each process, and Redis commands per file from
``INFO commandstats`` deltas.

The last line reads ``control plane: producer X us/comment, results Y us/comment, redis Z
us/comment; one producer feeds N comments/s`` (figures of the downloader's JSON Lines, the
format of large collections; N is what one core sustains at the producer's cost).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.cpu import Meter, run_measured
from bench.e2e import CACHE
from bench.inputs import FORMATS, downloader_jsonl
from emotions.constants import INFERENCE_QUEUE
from emotions.formats import iter_records
from harness.procs import descendants
from harness.stack import RedisServer, Stack

NULL_WORKER = [sys.executable, "-m", "bench.null_worker"]
IDLE_SECONDS = 3.0
US = 1e6


@contextmanager
def _stack(
    prefix: str, model: Path, split: bool = False
) -> Iterator[tuple[Stack, RedisServer, RedisServer | None]]:
    """Redis (as in the ``Procfile``) and folders in a fresh run folder; workers are added.
    ``split``: a second Redis as the result backend (job records, labels, ledgers, locks),
    the first one then only the broker (the chunk and assembly messages, the events)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=prefix) as tmp:
        root = Path(tmp)
        server = RedisServer(root / "redis", fsync="everysec")
        backend = RedisServer(root / "redis-backend", fsync="everysec") if split else None
        server.start()
        if backend is not None:
            backend.start()
        stack = Stack(root, server, model, inherit=(WINDOW_ENV,))
        if backend is not None:
            stack.extra_env["EMOTIONS_RESULT_BACKEND"] = backend.url
        try:
            yield stack, server, backend
        finally:
            stack.stop_all()
            server.stop()
            if backend is not None:
                backend.stop()


def control_plane(
    stack: Stack, server: RedisServer, workers: int, backend: RedisServer | None = None
) -> tuple[dict[str, Meter], float]:
    """Start ``workers`` null inference workers and a results worker on ``stack``; a CPU meter
    for each kind and for Redis, their idle rates measured; and the producer's start-up CPU."""
    nulls = [
        stack.start_worker(f"null{i}", "-Q", "inference", entry=NULL_WORKER, timeout=300)
        for i in range(workers)
    ]
    results = stack.start_worker("results", "-Q", "results", timeout=300)
    assert server.proc is not None
    meters = {
        "results": Meter([results.pid]),
        "redis": Meter([server.proc.pid]),
        "null_workers": Meter([p.pid for p in nulls]),
    }
    if backend is not None:
        assert backend.proc is not None
        meters["redis_backend"] = Meter([backend.proc.pid])
    startup = startup_cpu(stack)  # first: the pool children finish starting meanwhile
    _idle(list(meters.values()), IDLE_SECONDS)
    return meters, startup


def _idle(meters: Sequence[Meter], seconds: float) -> None:
    """Measure every meter's idle rate over the same ``seconds``."""
    before = [m.total() for m in meters]
    began = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - began
    for meter, cpu in zip(meters, before, strict=True):
        meter.idle_rate = (meter.total() - cpu) / wall


ALONE_WINDOW = 1_000_000  # --producer-alone: every chunk of the file sent at once
ALONE_SETTLED_SECONDS = 0.5  # ... once the chunk queue has not grown for this long
STARTUP_SEED = 1_000_000  # start-up runs' one-comment files (apart from the measured ones)
PROFILE_ENV = "BENCH_PROFILE_DIR"  # set: each measured producer runs under cProfile, saved here
WINDOW_ENV = "EMOTIONS_WINDOW"  # --window: passed on to every process the benchmark starts


def producer_cmd(folder: Path, log: str) -> list[str]:
    """``producer --once`` on ``folder`` (under cProfile when :data:`PROFILE_ENV` is set)."""
    cmd = [sys.executable, "-m", "producer", "--once", "--no-progress", "--input-dir", str(folder)]
    if profiles := os.environ.get(PROFILE_ENV):
        cmd[1:1] = ["-m", "cProfile", "-o", str(Path(profiles) / f"{log}.pstats")]
    return cmd


def _producer(stack: Stack, folder: Path, log: str, timeout: float) -> tuple[float, float]:
    cmd = producer_cmd(folder, log)
    watch = [*stack.procs, *([stack.redis.proc] if stack.redis.proc else [])]
    return run_measured(cmd, stack.env(), stack.root / "logs" / f"{log}.log", watch, timeout)


def _producer_alone(stack: Stack, folder: Path, log: str, timeout: float) -> tuple[float, float]:
    """:func:`_producer` with every worker stopped (``SIGSTOP``) until the producer has sent all
    its chunks (the window lifted, so it sends them at once): its CPU without the workers
    competing for the same two cores. On this machine two busy processes slow each other by
    up to half, so the producer's figure beside them swings with what they do; alone, it is
    its own cost. The workers resume once the chunk queue stops growing, and the run ends
    as usual (its outputs are checked)."""
    cmd = producer_cmd(folder, log)
    watch = [*stack.procs, *([stack.redis.proc] if stack.redis.proc else [])]
    env = stack.env(EMOTIONS_WINDOW=str(ALONE_WINDOW))
    paused = [pid for p in stack.procs for pid in (p.pid, *descendants(p.pid))]
    client = stack.redis.client()
    with ThreadPoolExecutor(1) as pool:
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            run = pool.submit(
                run_measured, cmd, env, stack.root / "logs" / f"{log}.log", watch, timeout
            )
            queued, since = -1, time.monotonic()
            while not run.done():
                now, length = time.monotonic(), int(client.llen(INFERENCE_QUEUE))
                if length != queued:
                    queued, since = length, now
                elif length and now - since > ALONE_SETTLED_SECONDS:
                    break  # every chunk sent
                time.sleep(0.05)
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
            client.close()
        return run.result()


def startup_folder(stack: Stack, name: str) -> Path:
    """A new folder holding one file of one comment (new content each time, so it is always
    processed): what a start-up run checks."""
    folder = stack.root / name
    folder.mkdir()
    downloader_jsonl(folder / f"{name}.jsonl", 1, STARTUP_SEED + len(list(stack.root.iterdir())))
    return folder


def startup_cpu(stack: Stack, runs: int = 3) -> float:
    """The producer's CPU on a folder of one one-comment file: the least of ``runs``,
    subtracted from every measured run.

    Not an empty folder: a first file costs a producer about 0.15-0.2 CPU s of one-time work
    an empty run never does (OpenSSL's first SHA-256, msgspec's decoders, kombu's channel
    and the event dispatcher on the first send, the first job's scripts), which read as up
    to 2 us per comment on a 100,000-comment file. One comment's own cost is negligible."""
    folders = [startup_folder(stack, f"input-startup{run}") for run in range(runs)]
    return min(_producer(stack, f, f"producer-startup{i}", 120)[0] for i, f in enumerate(folders))


def _check(output: Path, source: Path) -> None:
    """Every input record exactly once, in order, with its id (the output contract)."""
    got = [r["id"] for r in orjson.loads(output.read_bytes())]
    want = [r.id for r in iter_records(source)]
    if got != want:
        raise RuntimeError(f"{output.name}: {len(got)} records out, {len(want)} in, or reordered")


def measure_formats(
    model: Path,
    n: int,
    workers: int,
    formats: Sequence[str],
    seed: int,
    split: bool = False,
    repeat: int = 1,
    alone: bool = False,
) -> dict[str, dict[str, float]]:
    """Per format: CPU microseconds per comment of each process, and the end-to-end rate
    (``split``: broker and result backend on two Redis servers, measured apart). With
    ``repeat`` > 1 each format runs that many times (a file of other comments each time) and
    each figure is its best run's: the least CPU, the highest rate (on a shared machine, the
    other runs measured someone else's load as well). ``alone``: the producer measured by
    :func:`_producer_alone`."""
    found: dict[str, dict[str, float]] = {}
    with _stack("controlplane-", model, split) as (stack, server, backend):
        meters, startup = control_plane(stack, server, workers, backend)
        for name in formats:
            suffix, writer = FORMATS[name]
            runs: list[dict[str, float]] = []
            for run in range(repeat):
                label = name if run == 0 else f"{name}-{run}"
                folder = stack.root / f"input-{label}"
                folder.mkdir()
                source = folder / f"{label}{suffix}"
                count = writer(source, n, seed + run)
                for meter in meters.values():
                    meter.start()
                measure = _producer_alone if alone else _producer
                cpu, wall = measure(stack, folder, f"producer-{label}", 3600)
                spent = {key: meter.stop() for key, meter in meters.items()}
                _check(stack.output / f"{label}.json", source)
                runs.append(
                    {
                        "comments": count,
                        "producer": (cpu - startup) / count * US,
                        **{key: value / count * US for key, value in spent.items()},
                        "rate": count / wall,
                        "startup": startup,
                    }
                )
            found[name] = {
                key: (max if key == "rate" else min)(r[key] for r in runs) for key in runs[0]
            }
    return found


def _commands(client: Any) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def measure_small_files(model: Path, files: int, seed: int) -> dict[str, Any]:
    """``files`` files of 3 comments through one worker (all queues, tiny model)."""
    with _stack("smallfiles-", model) as (stack, server, _):
        worker = stack.start_worker("worker", timeout=300)
        assert server.proc is not None
        meters = {"worker": Meter([worker.pid]), "redis": Meter([server.proc.pid])}
        startup = startup_cpu(stack)  # first: the pool child finishes loading meanwhile
        _idle(list(meters.values()), IDLE_SECONDS)
        folder = stack.root / "input-small"
        folder.mkdir()
        for i in range(files):
            downloader_jsonl(folder / f"video{i:06d}.jsonl", 3, seed + i)
        client = server.client()
        before = _commands(client)
        for meter in meters.values():
            meter.start()
        cpu, wall = _producer(stack, folder, "producer-small", 3600)
        spent = {key: meter.stop() for key, meter in meters.items()}
        after = _commands(client)
        written = len(list(stack.output.glob("video*.json")))
        if written != files:
            raise RuntimeError(f"small files: {written} outputs for {files} inputs")
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    top = sorted(delta.items(), key=lambda kv: -kv[1])
    return {
        "files": files,
        "files_per_s": files / wall,
        "producer_ms": (cpu - startup) / files * 1e3,
        **{f"{key}_ms": value / files * 1e3 for key, value in spent.items()},
        "redis_commands": sum(delta.values()) / files,
        "top_commands": [(k, v / files) for k, v in top[:10]],
    }


def report(found: dict[str, dict[str, float]], small: dict[str, Any] | None, workers: int) -> str:
    """The table, the small-files figures and the last line."""
    lines = [
        f"CPU microseconds per comment ({workers} null inference worker(s)); rate = comments/s "
        "end to end (wall)",
        f"{'format':18} {'comments':>9} {'producer':>9} {'results':>8} {'redis':>6} "
        f"{'null w.':>8} {'rate/s':>9}",
    ]
    for name, f in found.items():
        redis = f["redis"] + f.get("redis_backend", 0.0)
        lines.append(
            f"{name:18} {f['comments']:9,.0f} {f['producer']:9.2f} {f['results']:8.2f} "
            f"{redis:6.2f} {f['null_workers']:8.2f} {f['rate']:9,.0f}"
        )
        if "redis_backend" in f:
            lines.append(
                f"{'':18} redis split: broker {f['redis']:.2f}, result backend "
                f"{f['redis_backend']:.2f} us/comment"
            )
    if found:
        startup = next(iter(found.values()))["startup"]
        lines.append(f"producer start-up (a one-comment file): {startup:.2f} CPU s")
    if small:
        lines.append(
            f"small files: {small['files']:,} files of 3 comments, {small['files_per_s']:.1f} "
            f"files/s; CPU per file: producer {small['producer_ms']:.2f} ms, worker "
            f"{small['worker_ms']:.2f} ms, redis {small['redis_ms']:.2f} ms; "
            f"{small['redis_commands']:.1f} redis commands per file"
        )
        lines.append("  per file: " + ", ".join(f"{k} {v:.1f}" for k, v in small["top_commands"]))
    lead = found.get("downloader-jsonl") or next(iter(found.values()), None)
    if lead:
        feeds = US / lead["producer"] if lead["producer"] > 0 else float("inf")
        lines.append(
            f"control plane: producer {lead['producer']:.2f} us/comment, results "
            f"{lead['results']:.2f} us/comment, redis "
            f"{lead['redis'] + lead.get('redis_backend', 0.0):.2f} us/comment; one "
            f"producer feeds {feeds:,.0f} comments/s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.controlplane", description=__doc__)
    p.add_argument("--comments", type=int, default=100_000, help="comments per large file")
    p.add_argument("--workers", type=int, default=1, help="null inference workers")
    p.add_argument("--formats", nargs="*", default=list(FORMATS), choices=list(FORMATS))
    p.add_argument("--small-files", type=int, default=1000, help="0: skip the small-files run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each format this many times and report each figure's best run (the least "
        "CPU): steadier on a shared machine",
    )
    p.add_argument(
        "--producers",
        type=int,
        default=0,
        help="instead of the formats and small files: a lone producer, then this many at once "
        "on their own folders beside one Redis (--comments each, downloader JSON Lines)",
    )
    p.add_argument(
        "--split-redis",
        action="store_true",
        help="broker and result backend on two Redis servers (EMOTIONS_RESULT_BACKEND), each "
        "one's CPU measured apart",
    )
    p.add_argument(
        "--producer-alone",
        action="store_true",
        help="stop the workers until the producer has sent every chunk (the window lifted): "
        "its CPU without them competing for the cores (the rate is then not the system's)",
    )
    p.add_argument(
        "--window",
        type=int,
        help="EMOTIONS_WINDOW of every producer (default: the setting's own): a small one shows "
        "how fast a full window refills",
    )
    p.add_argument(
        "--profile",
        type=Path,
        help="run each producer under cProfile, saving <format>.pstats here (its CPU figures "
        "then include the profiler's overhead)",
    )
    args = p.parse_args(argv)
    if args.window:
        os.environ[WINDOW_ENV] = str(args.window)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(args.profile.resolve())
    from bench.run import ensure_model

    model = ensure_model("tiny")
    if args.producers:
        from bench.fleet import fleet_report, measure_fleet

        fleet = measure_fleet(model, args.comments, args.producers, args.workers, args.seed)
        print(fleet_report(fleet))
        return 0
    found = measure_formats(
        model,
        args.comments,
        args.workers,
        args.formats,
        args.seed,
        args.split_redis,
        args.repeat,
        args.producer_alone,
    )
    small = measure_small_files(model, args.small_files, args.seed) if args.small_files else None
    print(report(found, small, args.workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
