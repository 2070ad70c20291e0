"""``python -m bench.run``: comments/s of the HF pipeline, naive batching, the engine in process
and the whole system end to end, on the same stand-in model, corpus and machine, in one run.

Why one run: throughput ratios are only meaningful when every contender saw the same machine
state, thread count, model and comments. The stand-in models have the real model's
shape and random weights (the hub is unreachable), built once into ``bench/.cache``. The
output is a markdown table for the README, preceded by the machine it came from.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.e2e import CACHE

os.environ["HF_HUB_OFFLINE"] = "1"  # stand-ins only: the hub is never needed
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the same for every contender

SIZES: dict[str, dict[str, Any]] = {
    # The real model's shape: bert-base-multilingual-cased, 12 layers, hidden 768.
    "real": {"layers": 12, "hidden": 768, "initializer_range": 0.02},
    # A small 6-layer model: faster runs, and a harsher test of overhead around the model.
    "small": {"layers": 6, "hidden": 384, "initializer_range": 0.02},
    # Only for --rss: inference must keep up with a million comments on a CPU.
    "tiny": {"layers": 2, "hidden": 32},
    # Only for --simulate: the real op count (12 layers) at almost no arithmetic.
    "proxy": {"layers": 12, "hidden": 16},
}
SIMULATE_COMMENTS = 20_000  # --simulate's default corpus: 40 chunks, a few seconds per run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument(
        "--comments",
        type=int,
        default=None,
        help="corpus size (default 500: about 10 minutes on 2 CPU cores; "
        f"{SIMULATE_COMMENTS:,} with --simulate)",
    )
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--model-size", choices=["real", "small", "both"], default="real")
    p.add_argument(
        "--chunk-sizes",
        default="64,128,256,512",
        help="engine chunk sizes to measure in process and end to end",
    )
    p.add_argument("--e2e-chunk-sizes", help="end-to-end subset (default: all chunk sizes)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per contender, fastest counts (noisy machines)"
    )
    p.add_argument("--keep", action="store_true", help="keep the e2e folders (logs) in .cache")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end runs")
    p.add_argument(
        "--simulate",
        choices=["h100", "a100", "t4"],
        help="MODELLED: run the worker on a simulated GPU of this kind (bench/sim.py)",
    )
    p.add_argument("--sim-chunk", type=int, default=512, help="--simulate: chunk size")
    p.add_argument("--sim-budget", type=int, default=16384, help="--simulate: big-GPU token budget")
    p.add_argument(
        "--rss",
        type=int,
        nargs="?",
        const=1_000_000,
        default=0,
        metavar="N",
        help="also measure producer/assembler peak RSS on N comments (1,000,000)",
    )
    return p.parse_args(argv)


def ensure_model(size: str) -> Path:
    """The stand-in model of ``size`` in the cache, built once (atomically) if missing.

    The cache key includes the source of ``harness/standins.py``: a change there rebuilds.
    """
    import hashlib

    from harness import standins

    target = CACHE / "models" / size
    source = hashlib.sha256(Path(standins.__file__).read_bytes()).hexdigest()
    spec = orjson.dumps({**SIZES[size], "standins": source}, option=orjson.OPT_SORT_KEYS)
    stamp = target / "bench-build.json"
    if stamp.exists() and stamp.read_bytes() == spec:
        return target
    print(f"building the {size} stand-in model {SIZES[size]} (once)...", file=sys.stderr)
    tmp = target.with_name(f".{size}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    standins.build_model(tmp, "bert", **SIZES[size])
    (tmp / "bench-build.json").write_bytes(spec)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def device_name(device: Any) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo, with the core count."""
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model} ({os.cpu_count()} logical CPUs)"


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, CPU seconds used by this run's processes).

    Their difference over a run is what other work took from the contenders: on a shared
    machine it says how far to trust the timings.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / ticks  # user nice system irq softirq steal
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


def bench_model(
    size: str, args: argparse.Namespace, texts: list[str], device: Any, threads: int
) -> tuple[list[Any], np.ndarray, list[str]]:
    """Every contender on one model: the table rows (naive first), the token lengths, and notes
    (on CUDA: how the fp16 labels compare with fp32 top-1)."""
    from bench.contenders import (
        batch_shapes,
        fp32_agreement,
        load_hf,
        model_flops,
        naive_indices,
        run_engine,
        run_naive,
        run_pipeline,
        token_lengths,
        warm_up_texts,
    )
    from emotions.settings import load_settings
    from worker.model import ModelHolder

    model_dir = ensure_model(size)
    holder_settings = load_settings(model=str(model_dir), device=str(device))
    holder = ModelHolder(holder_settings)
    engine = holder.engine  # loads and warms up, as a worker's pool child does
    tokenizer, model = load_hf(model_dir, device)
    # With EMOTIONS_BATCH_SIZE=auto the baselines keep the specification's batch of 16.
    batch, max_length = engine.batch_size or 16, engine.max_length
    lengths = token_lengths(tokenizer, texts, max_length)
    # Untimed: the longest batch first, so no contender pays the process's first big
    # allocations (the first run on a fresh process is measurably slower).
    warm = warm_up_texts(texts, lengths, batch)
    naive_indices(model, tokenizer, warm, device, batch, max_length)
    engine.classify_indices(warm)
    rows = [run_pipeline(model, tokenizer, texts, device, batch, lengths)]
    rows.insert(0, run_naive(model, tokenizer, texts, device, batch, max_length, lengths))
    del model
    chunks = [int(c) for c in args.chunk_sizes.split(",")]
    rows += [run_engine(engine, texts, c, device) for c in chunks]
    del holder, engine
    if not args.no_e2e:
        e2e = [int(c) for c in (args.e2e_chunk_sizes or args.chunk_sizes).split(",")]
        rows += run_e2e(model_dir, texts, e2e, str(device), threads, warm, lengths, args)
    budget, shape = holder_settings.token_budget, SIZES[size]

    def flops(chunk: int | None) -> float:
        shapes = batch_shapes(lengths, batch, chunk, budget)
        return model_flops(shapes, shape["layers"], shape["hidden"])

    notes = []
    if device.type == "cuda":
        notes.append(fp32_agreement(model_dir, tokenizer, texts, device, batch, max_length, rows))
    return [replace(r, flops=flops(r.chunk)) for r in rows], lengths, notes


def run_e2e(
    model_dir: Path,
    texts: list[str],
    chunks: list[int],
    device: str,
    threads: int,
    warm: list[str],
    lengths: np.ndarray,
    args: argparse.Namespace,
) -> list[Any]:
    """``producer --once`` on the corpus through Redis and one warm ``-c 1`` worker."""
    from bench.contenders import Result, chunked_efficiency
    from bench.e2e import BenchStack
    from emotions.settings import load_settings

    label2id = {
        v: int(k)
        for k, v in orjson.loads((model_dir / "config.json").read_bytes())["id2label"].items()
    }
    rows = []
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=CACHE, prefix="e2e-")
    with contextlib.ExitStack() as cleanup:
        if args.keep:
            print(f"end-to-end folders and logs kept in {tmp}", file=sys.stderr)
        else:
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        stack = BenchStack(Path(tmp), model_dir, device, threads)
        try:
            stack.start()
            # The same untimed warm-up as in process; also proves the pool child has loaded.
            warm_up = [{"id": f"w{i}", "comment": t} for i, t in enumerate(warm)]
            stack.producer(warm_up, "warmup", len(warm_up))
            recs = [{"id": f"c{i}", "comment": t} for i, t in enumerate(texts)]
            settings = load_settings()  # the worker's engine knobs (see bench.e2e.ENGINE_KNOBS)
            for chunk in chunks:
                seconds = float("inf")
                for attempt in range(max(1, args.repeat)):  # the fastest counts, as in process
                    name = f"bench-{chunk}-{attempt}"
                    seconds = min(seconds, stack.producer(recs, name, chunk)[0])
                out = stack.output(name)
                if [r["id"] for r in out] != [r["id"] for r in recs]:
                    raise RuntimeError(f"{name}: output records are not the input records")
                indices = np.array([label2id[r["emotion"]] for r in out], dtype=np.int64)
                eff = chunked_efficiency(
                    lengths, chunk, settings.rows_per_batch, settings.token_budget
                )
                rows.append(Result("end to end", chunk, len(texts), seconds, eff, indices))
        finally:
            stack.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from bench import contenders
    from bench.corpus import comments
    from bench.report import peak_gflops, render

    if args.simulate:
        from bench import simulate

        torch.set_num_threads(args.threads or 1)  # one host thread launches GPU work
        texts = list(comments(args.comments or SIMULATE_COMMENTS, args.seed))
        return simulate.main(args, texts, ensure_model("proxy"), torch.get_num_threads())
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    contenders.REPEAT = max(1, args.repeat)
    texts = list(comments(args.comments or 500, args.seed))
    sizes = ["real", "small"] if args.model_size == "both" else [args.model_size]
    started, cpu_before = time.perf_counter(), cpu_seconds()
    tables: dict[str, tuple[list[Any], np.ndarray]] = {}
    notes: list[str] = []
    for size in sizes:
        rows, lengths, size_notes = bench_model(size, args, texts, device, threads)
        tables[size], notes = (rows, lengths), [*notes, *size_notes]
    rss = None
    if args.rss:
        from bench.rss import measure_rss

        rss = measure_rss(ensure_model("tiny"), args.rss, args.seed, str(device), threads)
    elapsed, cpu_after = time.perf_counter() - started, cpu_seconds()
    others = (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1])
    machine = (
        f"{device_name(device)}, torch {torch.__version__}, {threads} torch threads, "
        f"{'fp16' if device.type == 'cuda' else 'fp32'}; other processes used "
        f"{max(0.0, others) / (elapsed * (os.cpu_count() or 1)):.0%} of the CPUs "
        "during the run"
    )
    cuda = device.type == "cuda"
    peak = peak_gflops(device_name(device)) if cuda else None
    text, ok = render(tables, SIZES, machine, args, rss, elapsed, peak, "fp16" if cuda else "fp32")
    text += "".join(f"\n\n{note}" for note in notes)
    print(text)
    return 0 if ok or device.type == "cuda" else 1


if __name__ == "__main__":
    sys.exit(main())
