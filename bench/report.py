"""The benchmark's output: one markdown table, with the machine and corpus it came from.

Why markdown: the README shows a recent table, so it must paste as is. The label
check is part of the table, not a separate log line: a speed-up that changed labels is no
speed-up, so a mismatch on CPU also makes ``python -m bench.run`` exit non-zero.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from bench.contenders import Result

NAMES = {
    "naive in-order": "naive in-order batches",
    "HF pipeline": "HF `pipeline` (baseline)",
    "engine in process": "engine in process",
    "end to end": "end to end: `producer --once` → Redis → 1 worker `-c 1`",
}


def corpus_line(lengths: np.ndarray, seed: int) -> str:
    """Token-length distribution of the corpus: what padding efficiency depends on."""
    p50, p90, p99 = (int(x) for x in np.percentile(lengths, [50, 90, 99]))
    return (
        f"**Corpus:** {len(lengths)} comments (seed {seed}), tokens per comment: median {p50}, "
        f"p90 {p90}, p99 {p99}, mean {lengths.mean():.1f}; {int((lengths >= 512).sum())} "
        "truncated at the 512-token limit"
    )


def model_line(sizes: dict[str, dict[str, Any]], used: list[str]) -> str:
    """Which stand-in each row used."""
    parts = [f"{s} = {sizes[s]['layers']} layers × hidden {sizes[s]['hidden']}" for s in used]
    return "**Models:** " + "; ".join(parts) + " (BERT, random weights, 28 GoEmotions labels)"


# Dense fp16 tensor-core peak, TFLOP/s, from the vendors' data sheets (no sparsity).
PEAK_FP16_TFLOPS = {
    "H200": 989,
    "H100 PCIe": 756,
    "H100": 989,
    "A100": 312,
    "L40S": 362,
    "L4": 121,
    "A10G": 70,
    "A10": 125,
    "V100": 125,
    "T4": 65,
}


def peak_gflops(device_name: str) -> float | None:
    """The fp16 peak of a known GPU in GFLOP/s (None for CPUs and unknown GPUs)."""
    for key, tflops in PEAK_FP16_TFLOPS.items():  # most specific names first
        if key in device_name:
            return tflops * 1000.0
    return None


def _rows(
    size: str, rows: list[Result], default_chunk: int, peak: float | None
) -> tuple[list[str], bool, str]:
    """Table lines of one model, whether every engine label matched, the best e2e line."""
    naive, pipe = rows[0], rows[1]
    engine = {r.chunk: r for r in rows if r.path == "engine in process"}
    ok, lines, n = True, [], naive.comments
    for r in [pipe, naive, *rows[2:]]:
        agree = int((r.indices == naive.indices).sum())
        if r is naive:
            check = "reference"
        else:
            check = f"{agree}/{n} {'✓' if agree == n else '✗'}"
            ok = ok and (agree == n or r.path == "HF pipeline")
        overhead = ""
        if r.path == "end to end" and r.chunk in engine:
            overhead = f"{r.seconds / engine[r.chunk].seconds - 1:+.1%}"
        chunk = (
            "" if r.chunk is None else str(r.chunk) + (" (default)" * (r.chunk == default_chunk))
        )
        gflops = f"{r.gflops:.0f}" + (f" ({r.gflops / peak:.0%} of peak)" if peak else "")
        lines.append(
            f"| {size} | {NAMES[r.path]} | {chunk} | {r.rate:.1f} | {r.rate / pipe.rate:.2f}x "
            f"| {r.efficiency:.3f} | {gflops} | {overhead} | {check} |"
        )
    # Random weights pool almost the same vector for every comment, so top-1 may barely vary:
    # say how strong the label check was (the CI test uses a model whose labels spread).
    spread = len(set(naive.indices.tolist()))
    notes = f"**Labels ({size}):** {spread} distinct top-1 labels over the corpus"
    notes += " (a weak check of order: see tests/bench)." if spread < 5 else "."
    e2e = [r for r in rows if r.path == "end to end"]
    if e2e:
        top = max(e2e, key=lambda r: r.rate)
        notes += (
            f" **Best end-to-end chunk size:** {top.chunk} — {top.rate:.1f} comments/s, "
            f"{top.rate / pipe.rate:.2f}x the pipeline."
        )
    return lines, ok, notes


def render(
    tables: dict[str, tuple[list[Result], np.ndarray]],
    sizes: dict[str, dict[str, Any]],
    machine: str,
    args: argparse.Namespace,
    rss: dict[str, float] | None,
    elapsed: float,
    peak: float | None = None,
    precision: str = "fp32",
) -> tuple[str, bool]:
    """The whole report as markdown, and False if the engine changed any label."""
    from emotions.settings import Settings

    default_chunk = Settings.model_fields["chunk_size"].default
    lengths = next(iter(tables.values()))[1]
    out = [
        f"**Machine:** {machine}",
        "",
        corpus_line(lengths, args.seed),
        "",
        model_line(sizes, list(tables)),
        "",
        "| model | path | chunk | comments/s | × pipeline | padding efficiency "
        f"| model GFLOP/s | e2e vs in process | labels = in-order {precision} |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    ok, notes = True, []
    for size, (rows, _) in tables.items():
        lines, size_ok, note = _rows(size, rows, default_chunk, peak)
        out += lines
        ok = ok and size_ok
        notes.append(note)
    notes.append(
        "Batch size 16 everywhere; padding efficiency = real tokens / tokens the model ran "
        "(the pipeline pads in-order batches like the naive path); model GFLOP/s counts the "
        "encoder's FLOPs padding included; e2e vs in process: extra wall time of the "
        "distributed path, producer start-up included."
    )
    if rss:
        notes.append(
            f"**Peak RSS, {rss['comments']:,.0f}-comment JSON Lines file** (tiny model, chunk "
            f"{rss['chunk']:.0f}, {rss['seconds']:.0f} s end to end): producer "
            f"{rss['producer']:.0f} MiB, results worker (assembler) {rss['results']:.0f} MiB, "
            f"inference worker {rss['inference']:.0f} MiB."
        )
    if not ok:
        notes.append(f"**LABEL MISMATCH:** the engine's labels differ from in-order {precision}.")
    notes.append(f"_Whole run: {elapsed:.0f} s._")
    for note in notes:  # separate paragraphs in markdown
        out += ["", note]
    return "\n".join(out), ok
