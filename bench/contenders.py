"""The in-process contenders, each timed over the same texts on the same model and device.

Why these three: the Hugging Face ``pipeline`` is what a user would reach for (the baseline);
naive in-order batching of 16 is the same arithmetic without the pipeline's per-item Python
work, so it separates "less overhead" from "less padding"; the project's
:class:`~worker.inference.Engine` adds length-sorted batches inside each chunk. Every
contender runs a short untimed warm-up first, and on CUDA the clock stops only after a
``synchronize``, so no one is charged for another's lazy initialisation or queued kernels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

WARM_UP = 32  # comments run untimed before each contender, so lazy set-up is not timed


@dataclass(frozen=True)
class Result:
    """One timed run: throughput, padding and the top-1 index of every comment (input order)."""

    path: str
    chunk: int | None
    comments: int
    seconds: float
    efficiency: float
    indices: np.ndarray
    flops: float = 0.0  # model FLOPs the run's batches cost (see model_flops)

    @property
    def rate(self) -> float:
        """Comments per second."""
        return self.comments / self.seconds

    @property
    def gflops(self) -> float:
        """Model GFLOP/s achieved, padding included: how busy the device was kept."""
        return self.flops / self.seconds / 1e9


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a timer measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


REPEAT = 1  # runs per contender; the fastest counts (bench.run --repeat sets it)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of the fastest of ``REPEAT`` runs of ``work()``, synced on CUDA.

    The fastest, because on a shared machine noise only ever adds time.
    """
    best, out = float("inf"), None
    for _ in range(REPEAT):
        sync(device)
        start = time.perf_counter()
        out = work()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def load_hf(model_dir: Path, device: torch.device) -> tuple[Any, Any]:
    """Tokenizer and model the way a user would load them (fp16 on CUDA, like the engine)."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from worker.device import dtype_keyword

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    kwargs: dict[str, Any] = {dtype_keyword(transformers.__version__): dtype}
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs)
    return tokenizer, model.to(device).eval()


def token_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Token count of each comment after truncation, special tokens included."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))


def warm_up_texts(texts: Sequence[str], lengths: np.ndarray, batch_size: int) -> list[str]:
    """The ``batch_size`` longest comments and as many short ones: every kind of batch."""
    order = np.argsort(-lengths, kind="stable")
    return [texts[i] for i in order[:batch_size]] + [texts[i] for i in order[-batch_size:]]


def batch_shapes(
    lengths: np.ndarray,
    batch_size: int | None,
    chunk_size: int | None = None,
    token_budget: int = 0,
) -> list[tuple[int, int]]:
    """(rows, padded width) of every batch the model runs.

    In input order when ``chunk_size`` is None (the pipeline, the naive path); otherwise the
    engine's plan over consecutive chunks, as the producer cuts a file.
    """
    if chunk_size is None:
        step = batch_size or len(lengths)
        return [
            (len(lengths[i : i + step]), int(lengths[i : i + step].max()))
            for i in range(0, len(lengths), step)
        ]
    from worker.inference import plan_batches

    shapes = []
    for i in range(0, len(lengths), chunk_size):
        part = lengths[i : i + chunk_size]
        shapes += plan_batches(part.tolist(), batch_size, token_budget).shapes
    return shapes


def efficiency(lengths: np.ndarray, shapes: list[tuple[int, int]]) -> float:
    """Real tokens / tokens the model processes (1.0 = no padding)."""
    padded = sum(rows * width for rows, width in shapes)
    return float(lengths.sum()) / padded if padded else 1.0


def in_order_efficiency(lengths: np.ndarray, batch_size: int) -> float:
    """Padding efficiency of consecutive batches padded to their longest member."""
    return efficiency(lengths, batch_shapes(lengths, batch_size))


def chunked_efficiency(
    lengths: np.ndarray, chunk_size: int, batch_size: int | None, token_budget: int = 0
) -> float:
    """Padding efficiency of the engine's plan over consecutive chunks of ``chunk_size``."""
    return efficiency(lengths, batch_shapes(lengths, batch_size, chunk_size, token_budget))


def model_flops(shapes: list[tuple[int, int]], layers: int, hidden: int) -> float:
    """Forward FLOPs of a BERT encoder over these batches, padding included.

    Per token and layer: 24·h² for the projections and feed-forward (4h² + 8h² multiply-adds),
    4·h·w for attention scores and their weighted sum over a width of w tokens.
    """
    return float(sum(r * w * layers * (24 * hidden**2 + 4 * hidden * w) for r, w in shapes))


def run_pipeline(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    device: torch.device,
    batch_size: int,
    lengths: np.ndarray,
) -> Result:
    """The baseline: ``pipeline("text-classification", top_k=1, sigmoid, batch_size=16)``."""
    from transformers import pipeline

    pipe = pipeline(
        "text-classification",
        model=model,
        tokenizer=tokenizer,
        top_k=1,
        function_to_apply="sigmoid",
        batch_size=batch_size,
        device=device,
    )
    label2id = {label: i for i, label in model.config.id2label.items()}
    # truncation=True: without it a comment over 512 tokens crashes the pipeline.
    pipe(list(texts[:WARM_UP]), truncation=True)
    seconds, out = timed(device, lambda: pipe(list(texts), truncation=True))
    indices = np.array([label2id[o[0]["label"]] for o in out], dtype=np.int64)
    eff = in_order_efficiency(lengths, batch_size)
    return Result("HF pipeline", None, len(texts), seconds, eff, indices)


def naive_indices(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    device: torch.device,
    batch_size: int,
    max_length: int,
) -> np.ndarray:
    """Top-1 per comment from in-order batches, each tokenized and padded to its longest."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            out.append(torch.argmax(torch.sigmoid(model(**enc).logits.float()), dim=-1))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.int64)


def fp32_agreement(
    model_dir: Path,
    tokenizer: Any,
    texts: Sequence[str],
    device: torch.device,
    batch_size: int,
    max_length: int,
    rows: Sequence[Result],
    min_gap: float = 0.05,
) -> str:
    """How often each fp16 path's labels equal fp32 top-1: overall, and where the fp32 gap
    between the two highest logits exceeds ``min_gap`` (closer calls may flip on rounding)."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    from worker.device import dtype_keyword

    kwargs: dict[str, Any] = {dtype_keyword(transformers.__version__): torch.float32}
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs)
    model = model.to(device).eval()
    tops, gaps = [], []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i : i + batch_size])
            enc = tokenizer(
                batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            logits = model(**enc.to(device)).logits.float()
            two = logits.topk(2, dim=-1).values
            tops.append(logits.argmax(dim=-1).cpu())
            gaps.append((two[:, 0] - two[:, 1]).cpu())
    top, gap = torch.cat(tops).numpy(), torch.cat(gaps).numpy()
    clear = gap > min_gap
    parts = [
        f"{r.path}{f' {r.chunk}' if r.chunk else ''}: {int((r.indices == top).sum())}/"
        f"{len(top)} overall, {int((r.indices == top)[clear].sum())}/{int(clear.sum())} "
        f"where the gap exceeds {min_gap}"
        for r in rows
    ]
    return "**Labels vs fp32 top-1:** " + "; ".join(parts) + "."


def run_naive(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    device: torch.device,
    batch_size: int,
    max_length: int,
    lengths: np.ndarray,
) -> Result:
    """In-order batches of ``batch_size``: the reference labels (fp32 on CPU)."""
    naive_indices(model, tokenizer, texts[:WARM_UP], device, batch_size, max_length)
    seconds, indices = timed(
        device, lambda: naive_indices(model, tokenizer, texts, device, batch_size, max_length)
    )
    eff = in_order_efficiency(lengths, batch_size)
    return Result("naive in-order", None, len(texts), seconds, eff, indices)


def run_engine(engine: Any, texts: Sequence[str], chunk_size: int, device: torch.device) -> Result:
    """The project's engine, fed chunk by chunk exactly as the producer cuts a file."""
    engine.classify_indices(list(texts[:WARM_UP]))
    real = padded = 0

    def work() -> np.ndarray:
        nonlocal real, padded
        real = padded = 0
        parts = []
        for i in range(0, len(texts), chunk_size):
            parts.append(engine.classify_indices(list(texts[i : i + chunk_size])))
            plan = engine.last_plan
            real, padded = real + plan.real_tokens, padded + plan.padded_tokens
        return np.concatenate(parts)

    seconds, indices = timed(device, work)
    return Result("engine in process", chunk_size, len(texts), seconds, real / padded, indices)
