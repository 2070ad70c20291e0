"""What a chunk cost (:class:`ChunkStats`) and a chunk on its way (:class:`Pending`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import torch

# Starts copying a chunk's labels (top-1 of each row, on the device) to the host; the call it
# returns waits for them.
Fetch = Callable[[torch.Tensor], Callable[[], np.ndarray]]


@dataclass
class ChunkStats:
    """What one chunk (or, summed, many) cost: forwards, tokens, and per stage the wall time
    and the process's CPU time (``*_cpu``; includes the tokenizer's own threads)."""

    comments: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    forwards: int = 0
    graph_forwards: int = 0
    oom_splits: int = 0
    nonfinite: int = 0  # rows whose logits were not finite, relabelled in fp32
    tokenized_ahead: int = 0  # chunks whose tokens were ready when they arrived
    dispatched_ahead: int = 0  # chunks whose forwards were queued before they arrived
    tokenize_s: float = 0.0
    plan_s: float = 0.0
    dispatch_s: float = 0.0
    wait_s: float = 0.0
    tokenize_cpu: float = 0.0
    plan_cpu: float = 0.0
    dispatch_cpu: float = 0.0
    wait_cpu: float = 0.0

    def add(self, other: ChunkStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def lap(self, stage: str, since: tuple[float, float]) -> tuple[float, float]:
        """Charge the time since ``since`` (wall, cpu) to ``stage``; the new mark."""
        now = (time.perf_counter(), time.process_time())
        setattr(self, f"{stage}_s", getattr(self, f"{stage}_s") + now[0] - since[0])
        setattr(self, f"{stage}_cpu", getattr(self, f"{stage}_cpu") + now[1] - since[1])
        return now


@dataclass
class Pending:
    """A dispatched chunk: its labels are on their way; :meth:`indices` waits for them."""

    order: np.ndarray  # the row index of each queued result, in dispatch order
    result: Callable[[], np.ndarray] | None  # waits for the labels' copy (None: no rows)
    stats: ChunkStats
    on_done: Callable[[ChunkStats], None] = field(default=lambda _: None)
    before_wait: Callable[[], None] = field(default=lambda: None)  # queue more work first
    repair: Callable[[np.ndarray], None] = field(default=lambda _: None)  # fix flagged rows

    def indices(self) -> np.ndarray:
        """Top-1 label index of each comment, in input order (the chunk's one sync)."""
        # Marked first: the next chunk queued ahead is part of this chunk's time on the host
        # (its start is measured from here, and nothing of this chunk may fall outside).
        mark = (time.perf_counter(), time.process_time())
        self.before_wait()
        out = np.zeros(len(self.order), dtype=np.int64)
        if self.result is not None:
            out[self.order] = self.result()
        self.stats.lap("wait", mark)
        self.repair(out)
        self.on_done(self.stats)
        return out
