"""worker.inference without a model: batch planning, padding, the activation, label order, OOM.

The Engine is driven by a character tokenizer and a fake forward function with the real
interface (a dict of ``input_ids``/``attention_mask`` tensors in, logits out). The fake
forward encodes each row's expected label in its logits (read from the row's first content
token), so a label that lands on the wrong comment after the length sort is caught.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from emotions.errors import InferenceOOMError, PermanentError, TransientError
from harness.standins import GO_EMOTIONS
from worker import inference
from worker.inference import BatchPlan, Engine, labels_for, pad, plan_batches, scores_from_logits

WORKER_DIR = Path(__file__).resolve().parents[2] / "worker"
LABELS = list(GO_EMOTIONS)
CLS, SEP, PAD = 1, 2, 0
BASE = 100  # token id of "label 0" in the first content position


class CharTokenizer:
    """One token per character; ``[CLS] ... [SEP]`` around each comment, like BERT."""

    pad_token_id: int | None = PAD

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        self.calls.append(kwargs)
        assert isinstance(texts, list)
        rows = []
        for text in texts:
            row = [CLS, *(ord(c) for c in text), SEP]
            if kwargs.get("truncation") and len(row) > kwargs["max_length"]:
                row = [*row[: kwargs["max_length"] - 1], SEP]
            rows.append(row)
        return {"input_ids": rows}


def comment(label: int, length: int) -> str:
    """A comment whose first character tells the fake model which label it must get."""
    return chr(BASE + label) + "x" * max(0, length - 1)


class FakeModel:
    """Forward function with the real interface; records every batch it sees."""

    def __init__(self, fail_above: int | None = None, fail_width: int | None = None) -> None:
        self.fail_above = fail_above
        self.fail_width = fail_width
        self.batches: list[tuple[int, int]] = []  # (rows, width) of each successful forward
        self.logits: list[torch.Tensor] = []

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        assert set(inputs) == {"input_ids", "attention_mask"}
        ids, prepared = inputs["input_ids"], inputs["attention_mask"]
        rows, width = ids.shape
        # The prepared mask: boolean (rows, 1, 1, width), True where a token takes part.
        assert prepared.dtype == torch.bool and prepared.shape == (rows, 1, 1, width)
        mask = prepared.reshape(rows, width).long()
        assert ids.dtype == torch.int64 and ids.device.type == "cpu"
        assert torch.is_inference_mode_enabled()
        if self.fail_above is not None and rows > self.fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        if self.fail_width is not None and width > self.fail_width:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        lengths = mask.sum(dim=1)
        # Dynamic padding: the batch is exactly as wide as its longest row, padded with PAD.
        assert int(lengths.max()) == width
        for r in range(rows):
            n = int(lengths[r])
            assert mask[r, :n].eq(1).all() and mask[r, n:].eq(0).all()
            assert ids[r, n:].eq(PAD).all() and ids[r, n - 1] == SEP
        label = (ids[:, 1] - BASE).clamp(0, len(LABELS) - 1)  # an empty comment: label 0
        logits = torch.full((rows, len(LABELS)), -3.0)
        logits[torch.arange(rows), label] = 4.0
        self.batches.append((rows, width))
        self.logits.append(logits)
        return logits


def engine(model: FakeModel, batch_size: int = 4, **kwargs: Any) -> Engine:
    kwargs.setdefault("max_length", 512)
    return Engine(
        CharTokenizer(), model, LABELS, torch.device("cpu"), batch_size=batch_size, **kwargs
    )


def shuffled_comments(n: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """``n`` comments of heavy-tailed lengths in random order, and their expected labels."""
    rng = random.Random(seed)
    labels = [rng.randrange(len(LABELS)) for _ in range(n)]
    lengths = [rng.choice([1, 2, 3, 5, 8, 13, 40, 90]) + rng.randrange(3) for _ in range(n)]
    return [comment(lab, ln) for lab, ln in zip(labels, lengths, strict=True)], [
        LABELS[lab] for lab in labels
    ]


def as_lists(plan: BatchPlan) -> list[list[int]]:
    return [b.tolist() for b in plan.batches]


# --- plan_batches ------------------------------------------------------------------------


def test_plan_sorts_longest_first_and_respects_batch_size() -> None:
    lengths = [3, 10, 5, 1, 7]
    plan = plan_batches(lengths, batch_size=2)
    assert as_lists(plan) == [[1, 4], [2, 0], [3]]
    assert plan.real_tokens == 26
    assert plan.padded_tokens == 10 * 2 + 5 * 2 + 1 * 1
    assert plan.efficiency == pytest.approx(26 / 31)


def test_plan_covers_every_row_exactly_once_in_descending_length() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(1, 300) for _ in range(203)]
    plan = plan_batches(lengths, batch_size=16)
    flat = np.concatenate(plan.batches).tolist()
    assert sorted(flat) == list(range(203))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert all(len(b) == 16 for b in plan.batches[:-1]) and len(plan.batches[-1]) == 203 % 16
    assert plan.real_tokens == sum(lengths)
    assert plan.padded_tokens == sum(lengths[b[0]] * len(b) for b in plan.batches)


def test_plan_is_stable_for_equal_lengths() -> None:
    assert as_lists(plan_batches([4, 4, 4, 4, 4], batch_size=2)) == [[0, 1], [2, 3], [4]]


def test_plan_token_budget_caps_rows_times_longest() -> None:
    lengths = [100, 90, 50, 40, 10, 10, 10]
    plan = plan_batches(lengths, batch_size=16, token_budget=200)
    assert as_lists(plan) == [[0, 1], [2, 3, 4, 5], [6]]
    for batch in plan.batches:
        assert lengths[batch[0]] * len(batch) <= 200
    assert plan.padded_tokens == 200 + 200 + 10


def test_plan_token_budget_still_bounded_by_batch_size() -> None:
    plan = plan_batches([2] * 40, batch_size=16, token_budget=10_000)
    assert [len(b) for b in plan.batches] == [16, 16, 8]


def test_plan_lone_comment_longer_than_budget_gets_its_own_batch() -> None:
    lengths = [5, 1000, 5, 5]
    plan = plan_batches(lengths, batch_size=16, token_budget=200)
    assert as_lists(plan) == [[1], [0, 2, 3]]
    assert plan.padded_tokens == 1000 + 15
    assert plan.efficiency == pytest.approx(1015 / 1015)


def test_plan_zero_length_rows_and_empty_input() -> None:
    plan = plan_batches([0, 0], batch_size=4, token_budget=8)
    assert as_lists(plan) == [[0, 1]]
    assert plan.efficiency == 1.0
    empty = plan_batches([], batch_size=16)
    assert empty.batches == [] and empty.real_tokens == 0 and empty.padded_tokens == 0
    assert empty.efficiency == 1.0


def test_sorting_beats_arrival_order_padding_on_heavy_tailed_lengths() -> None:
    rng = random.Random(3)
    lengths = [rng.choice([8, 10, 12, 15, 20, 30, 60, 200, 512]) for _ in range(512)]
    plan = plan_batches(lengths, batch_size=16)
    unsorted = sum(max(lengths[i : i + 16]) * len(lengths[i : i + 16]) for i in range(0, 512, 16))
    assert plan.padded_tokens < unsorted
    assert plan.efficiency > 0.9


# --- pad -----------------------------------------------------------------------------------


def test_pad_right_pads_to_longest_with_mask() -> None:
    ids, mask = pad([[5, 6, 7], [8], [9, 10]], pad_id=1)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1], [9, 10, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]


def test_pad_equal_rows_need_no_padding() -> None:
    ids, mask = pad([[1, 2], [3, 4]], pad_id=0)
    assert ids.tolist() == [[1, 2], [3, 4]] and mask.tolist() == [[1, 1], [1, 1]]


# --- the activation ------------------------------------------------------------------------


def test_scores_are_the_sigmoid_of_the_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 28, generator=gen) * 3
    scores = scores_from_logits(logits)
    assert scores.shape == logits.shape
    torch.testing.assert_close(scores, torch.sigmoid(logits))
    known = scores_from_logits(torch.tensor([[0.0, math.log(3.0), -math.log(3.0)]]))
    torch.testing.assert_close(known, torch.tensor([[0.5, 0.75, 0.25]]))


def test_scores_are_independent_per_label_not_a_distribution() -> None:
    logits = torch.tensor([[2.0, 2.0, 2.0, 2.0], [-4.0, -4.0, -4.0, -4.0], [0.0, 1.0, 2.0, 3.0]])
    scores = scores_from_logits(logits)
    sums = scores.sum(dim=-1)
    # Softmax rows sum to 1; sigmoid rows of 4 labels here sum to about 3.52, 0.07 and 2.99.
    assert not torch.allclose(sums, torch.ones(3), atol=1e-3)
    torch.testing.assert_close(sums[0], 4 * torch.sigmoid(torch.tensor(2.0)))
    # Raising one label's logit leaves every other label's score unchanged.
    bumped = logits.clone()
    bumped[2, 3] = 10.0
    after = scores_from_logits(bumped)
    torch.testing.assert_close(after[2, :3], scores[2, :3])
    assert after[2, 3] > scores[2, 3]


def test_scores_of_half_precision_logits_are_float32() -> None:
    logits = torch.tensor([[1.5, -2.0, 30.0]], dtype=torch.float16)
    scores = scores_from_logits(logits)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, torch.sigmoid(logits.float()))


def test_engine_picks_top1_from_sigmoid_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scores the Engine ranks are exactly sigmoid(logits) of the batch."""
    seen: list[torch.Tensor] = []
    real_top1 = inference.top1

    def spy(scores: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        seen.append(scores.clone())
        return real_top1(scores, logits)

    monkeypatch.setattr(inference, "top1", spy)
    model = FakeModel()
    texts, expected = shuffled_comments(9)
    assert engine(model, batch_size=4).classify(texts) == expected
    assert len(seen) == len(model.logits) == 3
    for scores, logits in zip(seen, model.logits, strict=True):
        torch.testing.assert_close(scores, torch.sigmoid(logits))
        assert not torch.allclose(scores.sum(dim=-1), torch.ones(len(scores)), atol=1e-3)


# --- labels, order, batching ---------------------------------------------------------------


def test_labels_for_maps_indexes_unchanged() -> None:
    assert labels_for(np.array([27, 0, 5, 0]), LABELS) == [
        "neutral",
        "admiration",
        "caring",
        "admiration",
    ]


def test_labels_come_back_in_input_order_after_sorting() -> None:
    model = FakeModel()
    texts, expected = shuffled_comments(37)
    eng = engine(model, batch_size=4)
    assert eng.classify(texts) == expected
    # It really sorted: batches were cut longest first, none larger than the batch size.
    widths = [w for _, w in model.batches]
    assert widths == sorted(widths, reverse=True)
    assert [r for r, _ in model.batches] == [4] * 9 + [1]
    assert eng.last_plan is not None
    assert eng.last_plan.real_tokens == sum(len(t) + 2 for t in texts)


def test_classify_indices_match_labels() -> None:
    texts = [comment(27, 3), comment(0, 50), comment(13, 1), comment(27, 9)]
    indices = engine(FakeModel(), batch_size=2).classify_indices(texts)
    assert indices.dtype == np.int64
    assert indices.tolist() == [27, 0, 13, 27]


def test_same_label_whatever_the_batch_size() -> None:
    texts, expected = shuffled_comments(50, seed=5)
    for size in (1, 3, 16, 64):
        assert engine(FakeModel(), batch_size=size).classify(texts) == expected


def test_token_budget_reaches_the_forward() -> None:
    model = FakeModel()
    texts, expected = shuffled_comments(40, seed=2)
    assert engine(model, batch_size=16, token_budget=200).classify(texts) == expected
    assert all(rows * width <= 200 or rows == 1 for rows, width in model.batches)


def test_tokenizer_is_asked_to_truncate_at_max_length() -> None:
    model = FakeModel()
    eng = engine(model, batch_size=4, max_length=16)
    labels = eng.classify([comment(3, 5000), comment(7, 2)])
    assert labels == [LABELS[3], LABELS[7]]
    call = eng.tokenizer.calls[-1]
    assert call["truncation"] is True and call["max_length"] == 16
    assert call["padding"] is False
    assert max(w for _, w in model.batches) == 16


def test_empty_input_runs_no_forward() -> None:
    model = FakeModel()
    eng = engine(model)
    assert eng.classify([]) == []
    indices = eng.classify_indices([])
    assert indices.shape == (0,) and indices.dtype == np.int64
    assert model.batches == []


def test_empty_comment_gets_a_label() -> None:
    labels = engine(FakeModel()).classify(["", comment(4, 3), ""])
    assert labels == [LABELS[0], LABELS[4], LABELS[0]]


def test_missing_pad_token_pads_with_zero() -> None:
    tok = CharTokenizer()
    tok.pad_token_id = None
    eng = Engine(tok, FakeModel(), LABELS, torch.device("cpu"), batch_size=4, max_length=64)
    assert eng.pad_id == 0
    assert eng.classify([comment(1, 2), comment(2, 9)]) == [LABELS[1], LABELS[2]]


# --- out of memory -------------------------------------------------------------------------


def test_oom_batches_are_split_until_they_fit(caplog: pytest.LogCaptureFixture) -> None:
    model = FakeModel(fail_above=2)
    texts, expected = shuffled_comments(23, seed=11)
    with caplog.at_level(logging.WARNING, logger="worker.inference"):
        labels = engine(model, batch_size=16).classify(texts)
    assert labels == expected
    assert all(rows <= 2 for rows, _ in model.batches)
    assert sum(rows for rows, _ in model.batches) == 23  # every comment ran exactly once
    assert "out of memory on a batch of 16" in caplog.text


def test_oom_on_one_long_comment_after_splitting_fails_with_transient_error() -> None:
    model = FakeModel(fail_width=60)
    texts = [comment(1, 3), comment(2, 100), comment(3, 4)]
    with pytest.raises(InferenceOOMError) as info:
        engine(model, batch_size=16).classify(texts)
    assert isinstance(info.value, TransientError)
    assert not isinstance(info.value, PermanentError)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    assert "102 tokens" in str(info.value)


def test_oom_on_every_batch_raises_inference_oom_error() -> None:
    model = FakeModel(fail_above=0)
    with pytest.raises(InferenceOOMError):
        engine(model, batch_size=4).classify([comment(1, 2)] * 5)
    assert model.batches == []


def test_other_errors_are_not_retried_in_halves() -> None:
    calls: list[int] = []

    def broken(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(int(inputs["input_ids"].shape[0]))
        raise RuntimeError("device-side assert triggered")

    eng = Engine(CharTokenizer(), broken, LABELS, torch.device("cpu"), batch_size=8, max_length=64)
    with pytest.raises(RuntimeError, match="device-side assert"):
        eng.classify([comment(1, 2)] * 5)
    assert calls == [5]


def _expected(texts: Sequence[str]) -> list[str]:
    return [LABELS[ord(t[0]) - BASE] for t in texts]


def test_oom_split_keeps_order_with_odd_sizes() -> None:
    texts = [comment(i % 28, 1 + (i * 7) % 31) for i in range(33)]
    model = FakeModel(fail_above=3)
    assert engine(model, batch_size=32).classify(texts) == _expected(texts)
    assert sum(rows for rows, _ in model.batches) == 33


# --- overlap: tokenizing while the device runs -------------------------------------------------


class GatedTokenizer(CharTokenizer):
    """Tokenizes a call that is not the first only once a forward has been queued: a chunk that
    is tokenized whole before its first forward would wait here in vain."""

    def __init__(self, forwarded: threading.Event) -> None:
        super().__init__()
        self.forwarded = forwarded
        self.threads: list[str] = []
        self.overlapped: list[bool] = []

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) > 1:
            self.overlapped.append(self.forwarded.wait(timeout=10))
        return super().__call__(texts, **kwargs)


def test_a_pipelined_chunk_tokenizes_its_next_slice_while_the_device_runs() -> None:
    forwarded = threading.Event()
    model = FakeModel()

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        forwarded.set()
        return model(inputs)

    tokenizer = GatedTokenizer(forwarded)
    eng = Engine(
        tokenizer, forward, LABELS, torch.device("cpu"), batch_size=16, max_length=512, pipeline=2
    )
    texts, expected = shuffled_comments(300, seed=9)
    assert eng.classify(texts) == expected
    assert len(tokenizer.threads) == 2 and tokenizer.threads[1].startswith("tokenizer")
    assert tokenizer.overlapped == [True]
    assert eng.last_plan is not None
    assert sorted(np.concatenate(eng.last_plan.batches).tolist()) == list(range(300))
    # Each half is sorted on its own: widths fall within a half, then start over.
    widths = [w for _, w in model.batches]
    drops = sum(1 for a, b in itertools.pairwise(widths) if b > a)
    assert drops == 1


def test_a_prefetched_chunk_is_not_tokenized_again() -> None:
    tokenizer = CharTokenizer()
    eng = Engine(
        tokenizer,
        FakeModel(),
        LABELS,
        torch.device("cpu"),
        batch_size=8,
        max_length=512,
        pipeline=2,
    )
    texts, expected = shuffled_comments(300, seed=10)
    eng.prefetch(texts)
    assert eng.classify(texts) == expected
    assert len(tokenizer.calls) == 1  # the prefetch; one plan over the whole chunk
    other, other_expected = shuffled_comments(40, seed=11)
    eng.prefetch(texts)
    assert eng.classify(other) == other_expected  # a different chunk: tokenized afresh
