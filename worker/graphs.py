"""CUDA graphs: every forward shape a chunk can need, captured once and replayed in one launch.

Why: an eager forward of this model queues a few hundred small kernels, one Python call each,
and at batch 16 the host spends longer launching them than the GPU spends running them (the
GPU idles). A captured graph replays all of them with one launch. Graphs need fixed shapes, so
widths are bucketed (:func:`worker.batching.graph_shapes`) and the planner cuts batches at
exactly those shapes; short batches are padded with dummy rows.

What makes capture possible: the forward reads nothing back from the device (the prepared
attention mask), and the mask is computed inside the graph from the row lengths, which are
copied into the graph's input buffers with the token ids before each replay.

Captured at warm-up, on CUDA only; then checked against the eager forward on sample comments
(:func:`disagreements`), and dropped with a warning if a confident label differs. A capture
that fails (out of memory, an op that refuses capture) drops every graph: an exception inside
``torch.cuda.graph`` can leave the thread on the capture stream and the allocator in a capture
state, so nothing captured after it (or with it, in the same pool) is trusted. The device is
synchronized, the thread put back on its default stream, and the worker runs eagerly
(:attr:`CudaGraphs.failure` says why).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from emotions.constants import GRAPH_CHECK_GAP, GRAPH_WARMUP_RUNS
from worker.batching import pad_ids
from worker.inference import Graphs

log = logging.getLogger(__name__)
T = TypeVar("T")
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, lengths) -> top-1


@dataclass
class _Captured:
    graph: Any  # torch.cuda.CUDAGraph
    ids: torch.Tensor  # static input buffers, overwritten before each replay
    lengths: torch.Tensor
    out: torch.Tensor  # static output, overwritten by each replay


class CudaGraphs:
    """Captured forwards by width bucket; :attr:`shapes` lists those that were captured."""

    def __init__(self, step: Step, wanted: dict[int, int], device: torch.device, pad_id: int):
        self.step = step
        self.wanted = dict(wanted)  # {width: rows}
        self.shapes: dict[int, int] = {}  # what was captured: the planner uses only these
        self.device = device
        self.pad_id = pad_id
        self._graphs: dict[int, _Captured] = {}
        self._lock = threading.Lock()  # one replay at a time: the buffers are shared
        self.failure: str | None = None  # why capture failed (every graph dropped)

    def capture(self) -> None:
        """Capture every wanted shape, widest first, all in one memory pool; all or none.

        One pool is safe because replays never overlap (one stream, one at a time) and every
        graph's input and output buffers stay allocated, so no capture reuses them.
        """
        with torch.cuda.device(self.device):  # capture streams and pool on the engine's GPU
            pool = torch.cuda.graph_pool_handle()
            captured, self.failure = capture_all(
                self.wanted, lambda rows, width: self._capture(rows, width, pool)
            )
            if self.failure is not None:
                for done in captured.values():
                    done.graph.reset()
                torch.cuda.set_stream(torch.cuda.default_stream(self.device))
                torch.cuda.synchronize(self.device)
                return
        self._graphs = captured
        self.shapes = {width: self.wanted[width] for width in captured}
        log.info(
            "CUDA graphs captured for %d shapes (rows x width): %s",
            len(self.shapes),
            ", ".join(f"{r}x{w}" for w, r in sorted(self.shapes.items())),
        )

    def _capture(self, rows: int, width: int, pool: Any) -> _Captured:
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long, device=self.device)
        lengths = torch.full((rows,), width, dtype=torch.long, device=self.device)
        side = torch.cuda.Stream(self.device)  # warm-up off the capture stream, as PyTorch asks
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_RUNS):
                self.step(ids, lengths)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            out = self.step(ids, lengths)
        return _Captured(graph, ids, lengths, out)

    def run(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """Top-1 of a batch of exactly a captured shape, on the device (not waited for)."""
        captured = self._graphs[ids.shape[1]]
        host_ids = torch.from_numpy(ids).pin_memory()
        host_lengths = torch.from_numpy(lengths).pin_memory()
        with self._lock, torch.cuda.device(self.device):
            captured.ids.copy_(host_ids, non_blocking=True)
            captured.lengths.copy_(host_lengths, non_blocking=True)
            captured.graph.replay()
            return captured.out.clone()  # queued before the next replay overwrites it

    def drop(self) -> None:
        """Forget every graph: the engine runs eagerly from now on."""
        self.shapes.clear()
        self._graphs.clear()


def capture_all(
    wanted: dict[int, int], capture: Callable[[int, int], T]
) -> tuple[dict[int, T], str | None]:
    """``capture(rows, width)`` of every wanted shape, widest first: ``(captured, None)``, or
    at the first failure ``(captured so far, why)`` (the caller drops them all)."""
    captured: dict[int, T] = {}
    for width in sorted(wanted, reverse=True):
        try:
            captured[width] = capture(wanted[width], width)
        except Exception as e:  # out of memory, or an op that cannot be captured
            return captured, f"capture of {wanted[width]}x{width} failed: {type(e).__name__}: {e}"
    return captured, None


def disagreements(eager_logits: torch.Tensor, graph_top1: torch.Tensor, min_gap: float) -> int:
    """Rows whose graph label differs from the eager one where eager was confident: the gap
    between its two highest logits exceeds ``min_gap`` (closer calls may flip on rounding)."""
    top2 = eager_logits.float().topk(2, dim=-1).values
    confident = (top2[:, 0] - top2[:, 1]) > min_gap
    return int(((eager_logits.float().argmax(dim=-1) != graph_top1.cpu()) & confident.cpu()).sum())


def verify(
    graphs: Graphs, logits: Step, samples: Sequence[Sequence[int]], pad_id: int
) -> tuple[int, int]:
    """(rows compared, confident disagreements) of every captured shape against eager.

    ``logits(ids, lengths)`` is the eager forward; ``samples`` token id rows, cut to each
    width so every bucket sees rows of its own length.
    """
    compared = wrong = 0
    for width, rows in sorted(graphs.shapes.items()):
        batch = [list(samples[i % len(samples)][:width]) for i in range(rows)]
        ids, lengths = pad_ids(batch, pad_id)
        eager = logits(
            torch.from_numpy(ids).to(graphs.device), torch.from_numpy(lengths).to(graphs.device)
        )
        full_ids, full_lengths = pad_ids(batch, pad_id, width, rows)
        wrong += disagreements(eager, graphs.run(full_ids, full_lengths), GRAPH_CHECK_GAP)
        compared += rows
    return compared, wrong
