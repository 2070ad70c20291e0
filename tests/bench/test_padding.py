"""Padding efficiency of the engine on the benchmark's corpus: a deterministic number, not a
timing, so a regression in length-aware batching shows in CI (>= 0.9 at the default
chunk size). Also checks that sorting by length changes no label: the speed-up must be free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.contenders import (
    chunked_efficiency,
    in_order_efficiency,
    load_hf,
    naive_indices,
    token_lengths,
)
from bench.corpus import comments
from emotions.settings import Settings, load_settings
from worker.model import ModelHolder

BATCH = 16  # the default batch size
CORPUS = 4096  # 16 chunks of the default 256: enough walls of text to matter, still fast
DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}


@pytest.fixture(scope="module")
def lengths(bert_model: Path) -> np.ndarray:
    """Token lengths of the seeded corpus with the stand-in tokenizer (the benchmark's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert_model)
    return token_lengths(tokenizer, list(comments(CORPUS, seed=0)), 512)


def test_corpus_is_heavy_tailed(lengths: np.ndarray) -> None:
    """Most comments are short, a few hit the limit: otherwise padding would not matter."""
    assert 8 <= np.median(lengths) <= 24
    assert (lengths == 512).sum() >= 5
    assert np.percentile(lengths, 99) >= 150


def test_default_chunk_size_meets_the_padding_target(lengths: np.ndarray) -> None:
    chunk, budget = DEFAULTS["chunk_size"], DEFAULTS["token_budget"]
    efficiency = chunked_efficiency(lengths, chunk, BATCH, budget)
    assert efficiency >= 0.9, (
        f"padding efficiency {efficiency:.3f} at chunk size {chunk}, batch {BATCH}, "
        f"token budget {budget}: below the 0.9 target"
    )


def test_naive_in_order_batching_is_markedly_worse(lengths: np.ndarray) -> None:
    """If sorting were removed from the planner, its efficiency would fall to this."""
    naive = in_order_efficiency(lengths, BATCH)
    engine = chunked_efficiency(lengths, DEFAULTS["chunk_size"], BATCH, DEFAULTS["token_budget"])
    assert naive < 0.4
    assert engine >= naive + 0.3


def test_sorting_changes_no_label(bert_model: Path) -> None:
    """The engine's labels, chunk by chunk, equal in-order fp32 batches of 16 on the CPU."""
    texts = list(comments(600, seed=1))
    engine = ModelHolder(load_settings(model=str(bert_model), device="cpu")).engine
    chunk = DEFAULTS["chunk_size"]
    sorted_path = np.concatenate(
        [engine.classify_indices(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    )
    tokenizer, model = load_hf(bert_model, torch.device("cpu"))
    in_order = naive_indices(model, tokenizer, texts, torch.device("cpu"), BATCH, 512)
    assert len(set(in_order.tolist())) >= 5  # labels spread out, so a mix-up would show
    np.testing.assert_array_equal(sorted_path, in_order)
