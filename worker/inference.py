"""Inference in steps: tokenize -> plan -> dispatch every batch -> one sync -> input order.

A chunk makes the host wait for the device exactly once, when its labels are copied back
(:func:`~worker.device.fetch_to_host`): every forward is queued without reading anything
back, the attention mask is built on the device in a format the model takes without a check
(:func:`~worker.device.choose_mask_format`), and each batch's top-1 stays on the device. So
the host pads and queues batch k+1 while the GPU still runs batch k, and with
:meth:`Engine.submit` a caller can do other work before it waits. Tokenizing runs in Rust
without the GIL, on a thread of its own when the next chunk is known early
(:meth:`Engine.prefetch`). Engines are safe to share between threads.

Only the forward function touches the model; planning (:mod:`worker.batching`), padding and
labelling are plain functions that the unit tests exercise without one.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import numpy as np
import torch

from emotions.constants import NONFINITE_LABEL, PIPELINE_MIN_SLICE
from emotions.errors import InferenceOOMError
from worker.batching import BatchPlan, merge, pad, pad_ids, plan_batches
from worker.device import Forward, MaskFormat, attention_mask, fetch_to_host, is_oom
from worker.lookahead import Ahead, Lookahead, Prepared
from worker.pending import ChunkStats, Fetch, Pending
from worker.tokens import Encode

__all__ = [
    "BatchPlan",
    "ChunkStats",
    "Engine",
    "Pending",
    "labels_for",
    "pad",
    "plan_batches",
    "scores_from_logits",
    "top1",
]
log = logging.getLogger(__name__)


class Graphs(Protocol):
    """Captured forwards (:class:`worker.graphs.CudaGraphs`): ``{width: rows}`` and a runner."""

    shapes: dict[int, int]  # captured shapes only; empty before capture()
    device: torch.device

    def capture(self) -> None: ...

    def run(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor: ...

    def drop(self) -> None: ...


def scores_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Independent per-label probabilities: GoEmotions is multi-label, so sigmoid;
    softmax would make the labels compete and change which one wins."""
    return torch.sigmoid(logits.float())


def top1(scores: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Index of the highest sigmoid score of each row, ties between scores broken by the logits.

    In float32 ``sigmoid(x)`` rounds to exactly 1.0 for every logit above about 16.6, so two
    confident labels would tie and ``argmax`` would pick the lower index whatever the model
    said. Sigmoid is strictly increasing, so the label with the highest logit is the label with
    the highest exact score: among the labels whose computed score is the row's maximum, the
    one with the highest logit wins. (The result equals ``argmax(logits)``.)
    """
    best = scores.amax(dim=-1, keepdim=True)
    return torch.argmax(logits.float().masked_fill(scores < best, float("-inf")), dim=-1)


def flag_nonfinite(indices: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``indices`` with :data:`~emotions.constants.NONFINITE_LABEL` in every row whose logits
    are not all finite: computed on the device, so the flag reaches the host with the labels,
    in the chunk's one copy, at no extra wait (``argmax`` would give such a row a label)."""
    finite = torch.isfinite(logits).all(dim=-1)
    return torch.where(finite, indices, torch.full_like(indices, NONFINITE_LABEL))


def labels_for(indices: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Map label indexes to names from the model config, unchanged: no filtering,
    no renaming."""
    return [labels[i] for i in indices.tolist()]


class Engine:
    """Labels comments with a loaded tokenizer and model; one per worker process."""

    def __init__(
        self,
        tokenizer: Any,
        forward: Forward,
        labels: Sequence[str],
        device: torch.device,
        *,
        batch_size: int | None,
        max_length: int,
        token_budget: int = 0,
        mask_format: MaskFormat = "4d",
        graphs: Graphs | None = None,
        fetch: Fetch | None = None,
        pipeline: int = 1,
    ) -> None:
        self.tokenizer = tokenizer
        self.forward = forward
        self.labels = list(labels)
        self.device = device
        self.batch_size = batch_size  # None: rows decided by the token budget alone
        self.max_length = max_length
        self.token_budget = token_budget
        self.mask_format: MaskFormat = mask_format
        self.graphs = graphs
        self.fetch: Fetch = fetch or fetch_to_host
        self.pipeline = pipeline  # slices of a chunk whose tokenizing overlaps the device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.last_plan: BatchPlan | None = None
        self.totals = ChunkStats()  # every chunk so far (logs, benchmark)
        self.observers: list[Callable[[ChunkStats], None]] = []  # told of each finished chunk
        self._lock = threading.Lock()
        self._tokenizing = threading.Lock()  # HF fast tokenizers are not safe to call twice at once
        self.ahead = Lookahead(self._prepare)  # chunks prepared before they are asked for
        self.run_ahead = False  # queue a prefetched chunk's forwards before waiting (async GPUs)
        self.encode: Encode | None = None  # a faster path to the same ids (worker.tokens)
        # Relabels rows whose logits were not finite (worker.reference.Reference.indices).
        self.relabel: Callable[[list[list[int]]], np.ndarray] | None = None
        self.gpu_name = "CPU" if device.type == "cpu" else str(device)  # named in fault reports
        self.about: dict[str, Any] = {}  # how this engine runs (worker.describe)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of every comment, truncated to the model's maximum, in one fast call."""
        with self._tokenizing:
            if self.encode is not None:
                return self.encode(list(texts))
            return self.tokenize_reference(texts)

    def tokenize_reference(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids as the transformers tokenizer call gives them (what :attr:`encode` must
        match)."""
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return encoded["input_ids"]

    def prefetch(self, texts: Sequence[str]) -> None:
        """Start tokenizing and planning ``texts`` on the tokenizer thread now (unless already
        started); the :meth:`submit` of an equal list uses the result (:mod:`worker.lookahead`).
        """
        self.ahead.prefetch(texts)

    def _prepare(self, texts: Sequence[str]) -> Prepared:
        """Tokens and batch plan of ``texts``: what runs on the tokenizer thread. (A plan made
        for graph shapes that were dropped since still runs, eagerly, at the same batches.)"""
        rows = self.tokenize(texts)
        return rows, self._plan(rows)

    def _plan(self, rows: list[list[int]]) -> BatchPlan:
        shapes = self.graphs.shapes if self.graphs is not None else None
        return plan_batches([len(r) for r in rows], self.batch_size, self.token_budget, shapes)

    def classify(self, texts: Sequence[str]) -> list[str]:
        """Top-1 emotion of each comment, in input order."""
        return labels_for(self.classify_indices(texts), self.labels)

    def classify_indices(self, texts: Sequence[str]) -> np.ndarray:
        """Top-1 label index of each comment, in input order."""
        return self.submit(texts).indices()

    def submit(self, texts: Sequence[str], ahead: Ahead | None = None) -> Pending:
        """Tokenize, plan and queue every forward of a chunk without waiting for the device.

        ``ahead()`` lists the chunks expected next; it is asked as soon as this chunk's own
        tokens are in hand (and once more after the dispatch if it had none yet), and each is
        tokenized (:meth:`prefetch`) while this chunk is dispatched and run.

        With ``pipeline`` > 1 and a chunk not tokenized ahead (:meth:`prefetch`), the chunk is
        cut into that many slices: each is sorted and planned on its own, and the next slice is
        tokenized on the tokenizer thread while this one's forwards are queued and run, so the
        GPU starts before the whole chunk is tokenized (at the cost of sorting smaller groups).
        """
        texts = list(texts)
        entry = self.ahead.take(texts)
        if entry is not None and entry.queued is not None:  # already on the device
            if ahead is not None:
                self.ahead.look(ahead)
            return entry.queued
        return self._submit(texts, entry.prepared if entry is not None else None, ahead)

    def _submit(
        self, texts: list[str], prepared: Future[Prepared] | None, ahead: Ahead | None
    ) -> Pending:
        stats, mark = ChunkStats(comments=len(texts)), (time.perf_counter(), time.process_time())
        ready = prepared.result() if prepared is not None else None
        stats.tokenized_ahead = int(ready is not None)
        if ready is not None or self.pipeline <= 1 or len(texts) < PIPELINE_MIN_SLICE * 2:
            bounds = [0, len(texts)]
        else:
            step = max(PIPELINE_MIN_SLICE, -(-len(texts) // self.pipeline))
            bounds = [*range(0, len(texts), step), len(texts)]
        pieces = [(a, b) for a, b in itertools.pairwise(bounds)]
        following: Future[Prepared] | None = None
        orders, parts, plans = [], [], []
        for k, (a, b) in enumerate(pieces):
            if ready is None:
                ready = following.result() if following is not None else None
            if ready is None:
                rows = self.tokenize(texts[a:b])
                mark = stats.lap("tokenize", mark)
                ready = rows, self._plan(rows)
                mark = stats.lap("plan", mark)
            else:
                mark = stats.lap("tokenize", mark)  # waiting for the tokenizer thread
            rows, plan = ready
            if k + 1 < len(pieces):
                following = self.ahead.executor().submit(
                    self._prepare, texts[slice(*pieces[k + 1])]
                )
            elif ahead is not None:
                ahead = None if self.ahead.look(ahead) else ahead
            plans.append(plan)
            for batch, (_, width) in zip(plan.batches, plan.shapes, strict=True):
                parts += self._dispatch([rows[i] for i in batch], width, stats)
                orders.append(batch + a)
            mark = stats.lap("dispatch", mark)
            ready = None
        if ahead is not None:
            self.ahead.look(ahead)
        self.last_plan = merge(plans, [a for a, _ in pieces])
        stats.real_tokens = self.last_plan.real_tokens
        stats.padded_tokens = self.last_plan.padded_tokens
        order = np.concatenate(orders) if orders else np.zeros(0, dtype=np.int64)
        result = None
        if parts:
            with torch.inference_mode():
                result = self.fetch(torch.cat(parts) if len(parts) > 1 else parts[0])
        return Pending(
            order,
            result,
            stats,
            self._account,
            self._queue_ahead,
            lambda out: self._relabel_nonfinite(texts, out, stats),
        )

    def _relabel_nonfinite(self, texts: list[str], out: np.ndarray, stats: ChunkStats) -> None:
        """Give the rows flagged as not finite their fp32 labels (:attr:`relabel`), in place."""
        bad = np.flatnonzero(out == NONFINITE_LABEL)
        if not len(bad):
            return
        stats.nonfinite = len(bad)
        if self.relabel is None:
            raise RuntimeError(f"{len(bad)} rows had non-finite logits and no fp32 path is set")
        log.warning("%d of %d rows had non-finite logits: relabelled in fp32", len(bad), len(out))
        out[bad] = self.relabel(self.tokenize([texts[i] for i in bad]))

    def logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The model's logits for device tensors of token ids and row lengths."""
        with torch.inference_mode():
            mask = attention_mask(lengths, ids.shape[1], self.mask_format)
            return self.forward({"input_ids": ids, "attention_mask": mask})

    def step(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One forward on device tensors: mask, logits, top-1 (flagged where the logits are
        not finite). What CUDA graphs capture."""
        with torch.inference_mode():
            logits = self.logits(ids, lengths)
            return flag_nonfinite(top1(scores_from_logits(logits), logits), logits)

    def _account(self, stats: ChunkStats) -> None:
        with self._lock:
            self.totals.add(stats)
        for observe in self.observers:
            observe(stats)

    def _queue_ahead(self) -> None:
        """Queue the oldest prefetched chunk's forwards before this chunk's wait. Only on an
        asynchronous device: on a CPU it would run a whole chunk inside another's task."""
        if self.run_ahead:
            self.ahead.queue_oldest(lambda texts, prepared: self._submit(texts, prepared, None))

    def _dispatch(self, rows: list[list[int]], width: int, stats: ChunkStats) -> list[torch.Tensor]:
        """Queue one planned batch; on out-of-memory, retry it in halves down to one comment.

        The retry happens after the ``except`` block has ended: inside it the exception's
        traceback still holds the failed forward's frames, and with them its activations, so
        freeing the cache there could not return their memory.
        """
        work, out = deque([rows]), []
        while work:
            part = work.popleft()
            try:
                out.append(self._run(part, width, stats))
                stats.forwards += 1
                continue
            except Exception as e:
                if not is_oom(e):
                    raise
                if len(part) == 1:
                    raise InferenceOOMError(
                        f"out of GPU memory on a single comment of {len(part[0])} tokens"
                    ) from e
            stats.oom_splits += 1
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            log.warning("out of memory on a batch of %d; retrying in halves", len(part))
            half = len(part) // 2
            work.extendleft([part[half:], part[:half]])
        return out

    def _run(self, part: list[list[int]], width: int, stats: ChunkStats) -> torch.Tensor:
        rows = self.graphs.shapes.get(width, 0) if self.graphs is not None else 0
        if len(part) <= rows:
            stats.graph_forwards += 1
            ids, lengths = pad_ids(part, self.pad_id, width, rows)
            return self.graphs.run(ids, lengths)[: len(part)]  # type: ignore[union-attr]
        ids, lengths = pad_ids(part, self.pad_id)
        return self.step(self._to_device(ids), self._to_device(lengths))

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """Host array to the device: from pinned memory and without waiting, on CUDA."""
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor
