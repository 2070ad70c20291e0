"""Inference, split into pure steps: tokenize -> plan batches -> forward -> label.

Only :meth:`Engine._forward` touches the model; planning, padding and labelling are plain
functions that the unit tests exercise without one. Comments are sorted by token length
before batches are cut, so a batch of 16 is padded to a length close to each member's own
instead of to the longest comment of 16 random ones (YouTube comment lengths are
heavy-tailed); labels are put back in input order at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emotions.errors import InferenceOOMError

log = logging.getLogger(__name__)

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Row indexes of each batch, longest batches first, and the padding they cost."""

    batches: list[np.ndarray]
    real_tokens: int
    padded_tokens: int

    @property
    def efficiency(self) -> float:
        """Real tokens / tokens the model processes (1.0 = no padding)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def plan_batches(lengths: Sequence[int], batch_size: int, token_budget: int = 0) -> BatchPlan:
    """Cut length-sorted batches of at most ``batch_size`` rows.

    With ``token_budget`` > 0 a batch also stops growing before ``rows * longest`` would exceed
    it (a lone comment longer than the budget still gets a batch of its own), which bounds
    activation memory on GPUs shared with other work.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")  # longest first: an OOM shows on the first batch
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = int(lens[order[start]])  # sorted descending: the first row is the longest
        size = batch_size
        if token_budget > 0:
            size = max(1, min(batch_size, token_budget // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    padded = sum(int(lens[b[0]]) * len(b) for b in batches)
    return BatchPlan(batches, int(lens.sum()), padded)


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id rows to the longest one: ``(input_ids, attention_mask)``."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def scores_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Independent per-label probabilities: GoEmotions is multi-label, so sigmoid (SEED-SPEC 12)."""
    return torch.sigmoid(logits.float())


def top1(scores: torch.Tensor) -> torch.Tensor:
    """Index of the highest-scoring label of each row."""
    return torch.argmax(scores, dim=-1)


def labels_for(indices: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Map label indexes to names from the model config, unchanged (SEED-SPEC 6)."""
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
        batch_size: int,
        max_length: int,
        token_budget: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.forward = forward
        self.labels = list(labels)
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.token_budget = token_budget
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.last_plan: BatchPlan | None = None

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of every comment, truncated to the model's maximum, in one fast call."""
        encoded = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return encoded["input_ids"]

    def classify(self, texts: Sequence[str]) -> list[str]:
        """Top-1 emotion of each comment, in input order."""
        return labels_for(self.classify_indices(texts), self.labels)

    def classify_indices(self, texts: Sequence[str]) -> np.ndarray:
        """Top-1 label index of each comment, in input order."""
        if not texts:
            return np.zeros(0, dtype=np.int64)
        rows = self.tokenize(texts)
        plan = plan_batches([len(r) for r in rows], self.batch_size, self.token_budget)
        self.last_plan = plan
        # Results stay on the device until the end: no per-batch sync, so the host pads the
        # next batch while the GPU still runs this one.
        pending = [(batch, self._top1_split([rows[i] for i in batch])) for batch in plan.batches]
        out = np.empty(len(rows), dtype=np.int64)
        for batch, indices in pending:
            out[batch] = indices.cpu().numpy()
        return out

    def _top1_split(self, rows: list[list[int]]) -> torch.Tensor:
        """Top-1 of one batch; on CUDA out-of-memory, retried in halves down to one comment."""
        try:
            return top1(scores_from_logits(self._forward(rows)))
        except torch.OutOfMemoryError as e:
            if len(rows) == 1:
                raise InferenceOOMError(
                    f"out of GPU memory on a single comment of {len(rows[0])} tokens"
                ) from e
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(rows) // 2
            log.warning("out of memory on a batch of %d; retrying in halves", len(rows))
            return torch.cat([self._top1_split(rows[:half]), self._top1_split(rows[half:])])

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        """Pad, copy to the device (pinned, non-blocking on CUDA) and run the model."""
        ids, mask = pad(rows, self.pad_id)
        tensors = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self.device.type == "cuda":
            tensors = {
                k: v.pin_memory().to(self.device, non_blocking=True) for k, v in tensors.items()
            }
        with torch.inference_mode():
            return self.forward(tensors)
