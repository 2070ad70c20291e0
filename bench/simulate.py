"""``python -m bench.run --simulate h100|t4|a100``: the worker on a simulated GPU, in process and
end to end (Redis, a real ``-c 1`` worker, prefork or ``-P threads``, ``producer --once``).
Every figure is MODELLED (:mod:`bench.sim`): the host work is real and timed on this machine,
the GPU is a calibrated model. The last two lines are the default setting's (the prefork
worker, batch 16) and the big-GPU setting's (a ``-P threads`` worker, batch 64, budget 4096)
end-to-end throughput and duty cycle (modelled GPU busy time / wall time).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.e2e import CACHE, BenchStack
from bench.sim_engine import LOG_ENV, PROXY_ENV, SIMULATE_ENV, read_log, sim_engine
from emotions.constants import LOOK_AHEAD_CHUNKS
from emotions.settings import load_settings
from worker.inference import ChunkStats

STAGES = ("tokenize", "plan", "dispatch", "wait")
WARM_UP_COMMENTS = 64
THREADS = ("-P", "threads")  # the big-GPU worker: one process, looks ahead at received chunks
BIG = {"batch_size": 64, "token_budget": 4096}  # the big-GPU batch setting (CUDA graphs on)


@dataclass(frozen=True)
class Config:
    """One way of running the worker: settings overrides, and how the engine is driven."""

    name: str
    settings: dict[str, Any]
    mask: str | None = None  # force a mask format ("2d": the old per-forward sync)
    prefetch: bool = True  # in process: look ahead at the next chunks, as a threads worker does
    worker_args: tuple[str, ...] = ()  # end to end: added to the worker's command line


def configs(budget: int) -> dict[str, Config]:
    return {
        "before": Config("eager, 2D mask (before)", {"cuda_graphs": False}, "2d", False),
        "eager": Config("eager, prepared mask", {"cuda_graphs": False}, prefetch=False),
        "default": Config("batch 16, CUDA graphs (default)", {}, prefetch=False),
        "default threads": Config("batch 16, CUDA graphs, `-P threads`", {}, worker_args=THREADS),
        "big": Config(
            "batch 64, budget 4096, CUDA graphs, `-P threads` (big GPU)", BIG, worker_args=THREADS
        ),
        "auto threads": Config(
            f"batch auto, budget {budget}, `-P threads`",
            {"batch_size": "auto", "token_budget": budget},
            worker_args=THREADS,
        ),
    }


@dataclass
class Run:
    """One measured configuration on one path (in process or end to end)."""

    path: str
    config: Config
    profile: str
    comments: int
    seconds: float
    busy_s: float
    syncs: int
    stats: ChunkStats
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.comments / self.seconds

    @property
    def duty(self) -> float:
        return self.busy_s / self.seconds

    def line(self) -> str:
        per_1k = 1000 / max(1, self.comments)
        cpu = ", ".join(f"{getattr(self.stats, s + '_cpu') * per_1k * 1e3:.1f}" for s in STAGES)
        syncs = self.syncs / max(1, self.stats.forwards)
        return (
            f"| {self.path} | {self.config.name} | {self.profile} | {self.rate:,.0f} "
            f"| {self.duty:.2f} | {self.stats.forwards * per_1k:.1f} | {syncs:.3f} "
            f"| {cpu} |"
        )


def in_process(cfg: Config, profile: str, texts: Sequence[str], chunk: int, proxy: Path) -> Run:
    """The engine driven chunk by chunk, as the task drives it (with ``prefetch``, as a
    threads worker's task does: it names the chunks received behind it)."""
    engine, device = sim_engine(
        load_settings(model=str(proxy), device="cpu", **cfg.settings), profile, proxy
    )
    if cfg.mask:
        engine.mask_format = cfg.mask  # type: ignore[assignment]
    engine.totals = ChunkStats()
    busy, syncs = device.busy_s, device.syncs
    chunks = [list(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    start = time.perf_counter()
    for k, part in enumerate(chunks):
        upcoming = chunks[k + 1 : k + 1 + LOOK_AHEAD_CHUNKS] if cfg.prefetch else []
        engine.submit(part, ahead=functools.partial(list, upcoming)).indices()
    seconds = time.perf_counter() - start
    return Run(
        "in process",
        cfg,
        profile,
        len(texts),
        seconds,
        device.busy_s - busy,
        device.syncs - syncs,
        engine.totals,
    )


def end_to_end(
    cfg: Config,
    profile: str,
    texts: Sequence[str],
    chunk: int,
    proxy: Path,
    threads: int,
    keep: bool,
) -> Run:
    """``producer --once`` through Redis and one simulated ``-c 1`` worker.

    Throughput is over the worker's busy window, from the first chunk's start to the last
    chunk's end (the producer's start-up and the final assembly excluded; the producer's own
    wall-clock rate is kept in ``extra``).
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=CACHE, prefix=f"sim-{profile}-"))
    log = root / "chunks.jsonl"
    env = {
        SIMULATE_ENV: profile,
        PROXY_ENV: str(proxy),
        LOG_ENV: str(log),
        **{f"EMOTIONS_{k.upper()}": str(v) for k, v in cfg.settings.items()},
    }
    stack = BenchStack(root, proxy, "cpu", threads)
    try:
        stack.start(entry=[sys.executable, "-m", "bench.sim_worker"], env=env, args=cfg.worker_args)
        warm = [{"id": f"w{i}", "comment": t} for i, t in enumerate(texts[:WARM_UP_COMMENTS])]
        stack.producer(warm, "warmup", chunk)
        records = [{"id": f"c{i}", "comment": t} for i, t in enumerate(texts)]
        began = time.time()
        wall, _ = stack.producer(records, "timed", chunk)
        if [r["id"] for r in stack.output("timed")] != [r["id"] for r in records]:
            raise RuntimeError("end to end: the output records are not the input records")
        rows = read_log(log)
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return _from_log(rows, began, cfg, profile, wall)


def _from_log(
    rows: list[dict[str, Any]], began: float, cfg: Config, profile: str, wall: float
) -> Run:
    before = [r for r in rows if r["end"] <= began]
    timed = [r for r in rows if r["end"] > began]
    if not timed:
        raise RuntimeError("end to end: the simulated worker logged no chunk")
    starts = [r["end"] - sum(r[f"{s}_s"] for s in STAGES) for r in timed]
    window = max(r["end"] for r in timed) - min(starts)
    stats = ChunkStats()
    for r in timed:
        stats.add(ChunkStats(**{k: r[k] for k in vars(stats)}))
    busy = timed[-1]["busy_s"] - (before[-1]["busy_s"] if before else 0.0)
    syncs = timed[-1]["syncs"] - (before[-1]["syncs"] if before else 0)
    engine_s = sum(r[f"{s}_s"] for r in timed for s in STAGES)
    extra = {
        "producer rate": stats.comments / wall,
        "outside engine s/1k": (window - engine_s) * 1000 / stats.comments,
    }
    return Run("end to end", cfg, profile, stats.comments, window, busy, syncs, stats, extra)


def main(args: argparse.Namespace, texts: list[str], proxy: Path, threads: int) -> int:
    """Run and print the simulated benchmark; 0."""
    from bench.run import cpu_seconds
    from bench.stages import render_and_store

    profile, chunk = args.simulate, args.sim_chunk
    table = configs(args.sim_budget)
    started, cpu_before = time.perf_counter(), cpu_seconds()
    runs = [in_process(table[k], profile, texts, chunk, proxy) for k in table]
    runs += [in_process(table[k], "null", texts, chunk, proxy) for k in ("default", "big")]
    labels = sim_engine(load_settings(model=str(proxy), device="cpu"), "null", proxy)[0].labels
    indices = np.zeros(len(texts), dtype=np.int64)
    stages = render_and_store(texts, indices, labels, chunk)
    if not args.no_e2e:
        plan = [("default", profile), ("default", "null"), ("big", profile), ("big", "null")]
        plan += [("default threads", profile), ("auto threads", profile)]
        for key, prof in plan:
            runs.append(end_to_end(table[key], prof, texts, chunk, proxy, threads, args.keep))
    elapsed = time.perf_counter() - started
    busy, own = cpu_seconds()
    others = (busy - cpu_before[0]) - (own - cpu_before[1])
    load = (
        f"other processes used {max(0.0, others) / (elapsed * (os.cpu_count() or 1)):.0%} "
        f"of this machine's {os.cpu_count()} CPUs meanwhile"
    )
    print(render(runs, stages, args, profile, elapsed, load))
    return 0


def render(
    runs: list[Run],
    stages: dict[str, float],
    args: argparse.Namespace,
    profile: str,
    elapsed: float,
    load: str,
) -> str:
    """The report: a table of every run, the task's own stages, then the two summary lines."""
    out = [
        f"**MODELLED {profile.upper()}** (simulated GPU, bench/sim.py; host work real, on "
        f"this machine): {runs[0].comments:,} comments, chunks of "
        f"{args.sim_chunk}; `null` = no GPU time and no forward (the pipeline's ceiling)",
        "",
        "| path | setting | GPU | comments/s | duty cycle | forwards/1k | syncs/forward "
        "| CPU ms/1k comments: tokenize, plan, dispatch, wait |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    out += [r.line() for r in runs]
    out += [
        "",
        f"Task stages (in process, real redis-server), CPU ms/1k comments: render "
        f"{stages['render'] * 1e3:.1f}, store {stages['store'] * 1e3:.1f} (store wall "
        f"{stages['store wall'] * 1e3:.1f}). CPU columns are this process's CPU during each "
        "stage (the tokenizer's threads included; `wait` counts work overlapping the wait).",
    ]
    for r in (r for r in runs if r.path == "end to end"):
        outside = (
            f"outside the engine {r.extra['outside engine s/1k'] * 1e3:.1f} ms/1k comments "
            "(task, Celery, Redis)"
            if not r.config.worker_args
            else "chunks overlap"
        )
        out.append(
            f"End to end, {r.config.name}, {r.profile}: producer wall-clock rate "
            f"{r.extra['producer rate']:,.0f}/s (its start-up included), {outside}."
        )
    out.append(f"_Whole run: {elapsed:.0f} s; {load}._")
    headline = {r.config.name: r for r in runs if r.path == "end to end" and r.profile == profile}
    table = configs(args.sim_budget)
    d, big = headline.get(table["default"].name), headline.get(table["big"].name)
    if d is not None and big is not None:
        out += [
            "",
            f"modelled {profile}, default setting ({d.config.name}): {d.rate:,.0f} "
            f"comments/s end to end, duty cycle {d.duty:.2f}",
            f"modelled {profile}: {big.rate:,.0f} comments/s end to end, duty cycle {big.duty:.2f}",
        ]
    return "\n".join(out)
