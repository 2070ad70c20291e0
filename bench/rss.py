"""Peak memory of the producer and the assembler on a very large file (once ~1.5 GB each,
before streaming).

Why a tiny model: what is measured is the memory of the processes that parse, chunk and
assemble a million comments, which does not depend on the model; with the real model a CPU
would need hours to label them. The file is JSON Lines (youtube-comment-downloader's default,
and what a million-comment file is in practice), the workers are split by queue as in the
``Procfile``, and each process's own peak (``VmHWM``) is reported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.corpus import records
from bench.e2e import CACHE, BenchStack, tree_peak_rss_mib


def _count_records(path: Path) -> int:
    """Records in an output file: one per line between ``[`` and ``]``, read in blocks."""
    lines = 0
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
    return max(0, lines - 2)


def measure_rss(model: Path, n: int, seed: int, device: str, threads: int) -> dict[str, float]:
    """Run ``producer --once`` on ``n`` comments; peak RSS (MiB) of each process, and seconds."""
    from emotions.settings import load_settings

    chunk = load_settings().chunk_size
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rss-") as tmp:
        stack = BenchStack(Path(tmp), model, device, threads)
        try:
            inference, results = stack.start(["inference", "results"])
            stack.producer(records(64, seed + 1), "warmup", 64)
            seconds, producer = stack.producer(records(n, seed), "million", chunk, jsonl=True)
            written = _count_records(Path(tmp) / "output" / "million.json")
            if written != n:
                raise RuntimeError(f"--rss: the output holds {written} records, not {n}")
            return {
                "comments": n,
                "chunk": chunk,
                "seconds": seconds,
                "producer": producer,
                "results": tree_peak_rss_mib(results.pid),
                "inference": tree_peak_rss_mib(inference.pid),
            }
        finally:
            stack.stop()
