"""The fp32 reference: the same weights in float32 on the CPU, run the plainest way.

Two things lean on it. The self-test at start (:mod:`worker.selftest`) compares the labels
of the path the worker will use on the device (fp16, a prepared mask, the attention kernel
PyTorch picks, CUDA graphs) with these; and a row whose device logits are not finite
(:data:`~emotions.constants.NONFINITE_LABEL`) gets its label from here instead. The CPU
keeps no state of the device path: a kernel bug on the GPU cannot reach it. On a CPU worker
it is the worker's own model (fp32 against fp32: the check is cheap and trivially passes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from worker.batching import pad_ids
from worker.device import Forward, attention_mask
from worker.inference import scores_from_logits, top1

# Rows per reference forward: small, so a 512-token row does not pad many short ones.
REFERENCE_ROWS = 8


class Reference:
    """fp32 logits and labels of token id rows, on the CPU, with the tokenizer's 2D mask."""

    def __init__(self, forward: Forward, pad_id: int) -> None:
        self.forward = forward
        self.pad_id = pad_id

    def logits(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """float32 logits of every row, in order (rows batched by similar length)."""
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out: list[torch.Tensor | None] = [None] * len(rows)
        with torch.inference_mode():
            for start in range(0, len(order), REFERENCE_ROWS):
                picked = order[start : start + REFERENCE_ROWS]
                ids, lengths = pad_ids([rows[i] for i in picked], self.pad_id)
                width = ids.shape[1]
                mask = attention_mask(torch.from_numpy(lengths), width, "2d")
                logits = self.forward({"input_ids": torch.from_numpy(ids), "attention_mask": mask})
                for k, i in enumerate(picked):
                    out[i] = logits[k].float()
        return torch.stack([t for t in out if t is not None]) if rows else torch.zeros(0, 0)

    def indices(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Top-1 label index of every row, as the worker computes it (sigmoid, tie-break)."""
        logits = self.logits(rows)
        if not len(rows):
            return np.zeros(0, dtype=np.int64)
        return top1(scores_from_logits(logits), logits).numpy()
