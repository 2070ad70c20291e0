"""Which comments share a forward pass, and at what shape: plain functions, no model, no torch.

Comments are sorted by token length before batches are cut, so a batch is padded to a length
close to each member's own instead of to the longest of 16 random ones (YouTube comment lengths
are heavy-tailed). A batch stops growing at ``batch_size`` rows (``None``: the token budget
alone decides, the big-GPU setting) and before ``rows x width`` would exceed the token budget.

With CUDA graphs a forward must have one of a few fixed shapes, so widths are rounded up to a
bucket (:data:`~emotions.constants.GRAPH_WIDTHS`) and each bucket has one row count, the one
the budget allows at that width; only the chunk's last (shortest) batch can be short of rows,
and it is padded with dummy rows.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emotions.constants import AUTO_FORWARD_TOKENS


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Row indexes of each batch (longest first), the shape each runs at, and the padding cost."""

    batches: list[np.ndarray]
    shapes: list[tuple[int, int]]  # (rows, width) the model runs; rows > len(batch) if padded
    real_tokens: int
    padded_tokens: int

    @property
    def efficiency(self) -> float:
        """Real tokens / tokens the model processes (1.0 = no padding)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def rows_for_width(width: int, batch_size: int | None, token_budget: int) -> int:
    """Rows a batch of this width may have: the row cap, and at most ``token_budget`` tokens."""
    cap = batch_size if batch_size is not None else max(1, token_budget)
    if token_budget <= 0:
        return max(1, cap)
    return max(1, min(cap, token_budget // max(width, 1)))


def graph_shapes(
    batch_size: int, token_budget: int, max_length: int, widths: Sequence[int]
) -> dict[int, int]:
    """``{width bucket: rows}`` of every forward shape a chunk can need, up to ``max_length``."""
    buckets = sorted({w for w in widths if w < max_length} | {max_length})
    return {w: rows_for_width(w, batch_size, token_budget) for w in buckets}


def bucket_for(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket that holds ``length`` tokens (``buckets`` sorted), or None."""
    i = bisect.bisect_left(buckets, length)
    return buckets[i] if i < len(buckets) else None


def plan_batches(
    lengths: Sequence[int],
    batch_size: int | None,
    token_budget: int = 0,
    shapes: Mapping[int, int] | None = None,
) -> BatchPlan:
    """Cut length-sorted batches; with ``shapes`` (``{width bucket: rows}``), at those shapes.

    Without ``shapes`` a batch runs at its own rows and its longest member's width, and a lone
    comment longer than the budget still gets a batch of its own.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")  # longest first: an OOM shows on the first batch
    batches: list[np.ndarray] = []
    run_shapes: list[tuple[int, int]] = []
    if batch_size is None and not shapes and token_budget > 0:
        cuts = cost_cuts(lens[order], token_budget, AUTO_FORWARD_TOKENS)
        batches = [order[a:b] for a, b in itertools.pairwise(cuts)]
        run_shapes = [(len(b), int(lens[b[0]])) for b in batches]
        return BatchPlan(batches, run_shapes, int(lens.sum()), sum(r * w for r, w in run_shapes))
    buckets = sorted(shapes) if shapes else []
    start = 0
    while start < len(order):
        longest = int(lens[order[start]])  # sorted descending: the first row is the longest
        bucket = bucket_for(longest, buckets) if shapes else None
        if shapes is not None and bucket is not None:
            size = rows = shapes[bucket]
            width = bucket
        else:
            size = rows_for_width(longest, batch_size, token_budget)
            width = longest
        batch = order[start : start + size]
        batches.append(batch)
        run_shapes.append((rows if bucket is not None else len(batch), width))
        start += size
    padded = sum(r * w for r, w in run_shapes)
    return BatchPlan(batches, run_shapes, int(lens.sum()), padded)


def cost_cuts(desc: np.ndarray, token_budget: int, forward_tokens: int) -> list[int]:
    """Where to cut lengths sorted longest first so that padded tokens plus ``forward_tokens``
    per batch is least, no batch above ``token_budget`` tokens (a longer row: its own batch).

    Why not fill each batch to the budget: with a large budget the first batch would pad the
    32 longest comments to the longest one, which can double a chunk's work. An exact dynamic
    programme over the points where the length changes (and where the budget forces a cut):
    about a hundred points per chunk of 512, so about a millisecond.
    """
    n = len(desc)
    if n == 0:
        return [0]
    points = [0]
    for i in range(1, n + 1):  # a batch never needs to start inside a run of equal lengths...
        if i == n or desc[i] != desc[i - 1]:
            start, room = points[-1], max(1, token_budget // max(int(desc[points[-1]]), 1))
            points += [*range(start + room, i, room), i]  # ...unless the budget says so
    cuts = np.array(points, dtype=np.int64)
    width = desc[np.minimum(cuts, n - 1)].astype(np.int64)
    best = np.zeros(len(cuts))
    came = np.zeros(len(cuts), dtype=np.int64)
    for k in range(1, len(cuts)):
        rows = cuts[k] - cuts[:k]
        tokens = rows * width[:k]
        cost = np.where(tokens <= token_budget, best[:k] + forward_tokens + tokens, np.inf)
        cost[k - 1] = best[k - 1] + forward_tokens + tokens[k - 1]  # always allowed
        came[k] = int(np.argmin(cost))
        best[k] = cost[came[k]]
    out, k = [n], len(cuts) - 1
    while k > 0:
        k = int(came[k])
        out.append(int(cuts[k]))
    return out[::-1]


def merge(plans: Sequence[BatchPlan], offsets: Sequence[int]) -> BatchPlan:
    """One plan from the plans of consecutive slices starting at ``offsets``."""
    if len(plans) == 1 and offsets[0] == 0:
        return plans[0]
    return BatchPlan(
        [b + offset for plan, offset in zip(plans, offsets, strict=True) for b in plan.batches],
        [shape for plan in plans for shape in plan.shapes],
        sum(p.real_tokens for p in plans),
        sum(p.padded_tokens for p in plans),
    )


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id rows to the longest one: ``(input_ids, attention_mask)``."""
    ids, lengths = pad_ids(rows, pad_id)
    mask = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
    return ids, mask


def pad_ids(
    rows: Sequence[Sequence[int]], pad_id: int, width: int = 0, n_rows: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, lengths)``: rows right-padded to ``width`` (default: the longest).

    ``n_rows`` > ``len(rows)`` adds dummy rows of one padding token, as a fixed graph shape
    needs; they attend to that one token, so no row of the batch is all masked (which makes
    attention produce NaN), and their results are dropped.
    """
    width = max(width, max((len(r) for r in rows), default=1))
    total = max(n_rows, len(rows))
    ids = np.full((total, width), pad_id, dtype=np.int64)
    lengths = np.ones(total, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return ids, lengths
