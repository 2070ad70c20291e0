"""worker.tokens: the Rust tokenizer's ids, used only where they equal the transformers call's.

Checked on the tiny trained tokenizers of both model families (``any_model``), on comments of
several scripts and one cut at ``max_length``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.worker.test_gpu_path import LABELS, logits_for
from tests.worker.test_inference import CharTokenizer
from worker import engine as engine_module
from worker.engine import WARM_UP_TEXTS, use_fast_tokenizer
from worker.inference import Engine
from worker.tokens import Encode, fast_encoder, same_ids

MAX_LENGTH = 64
TEXTS = [
    "This video made my day, thank you so much!",
    "😂😂😂 lmao ❤️🔥",
    "هذا الفيديو رائع جدا، شكرا لك",
    "この曲 本当に 大好き です",
    "C'est vraiment génial, j'adore cette chanson !",
    "",
    "ok",
    "I can't believe how bad this is, what a waste of time. " * 8,  # past MAX_LENGTH
]


def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return logits_for(inputs["input_ids"])


def make_engine(tokenizer: Any, max_length: int = MAX_LENGTH) -> Engine:
    return Engine(
        tokenizer, forward, LABELS, torch.device("cpu"), batch_size=4, max_length=max_length
    )


@pytest.fixture
def tokenizer(any_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(any_model))


def test_fast_encoder_gives_the_reference_ids(tokenizer: Any) -> None:
    eng = make_engine(tokenizer)
    encode = fast_encoder(tokenizer, MAX_LENGTH)
    assert encode is not None
    reference = eng.tokenize_reference(TEXTS)
    assert len(reference[-1]) == MAX_LENGTH  # the long comment was cut
    assert all(len(r) < MAX_LENGTH for r in reference[:-1])
    assert encode(TEXTS) == reference
    assert [encode([t])[0] for t in TEXTS] == reference  # alone as in a batch
    assert same_ids(encode, eng.tokenize_reference, TEXTS)


def test_fast_encoder_leaves_the_tokenizer_as_it_was(tokenizer: Any) -> None:
    eng = make_engine(tokenizer)
    before = eng.tokenize_reference(TEXTS)
    backend = tokenizer.backend_tokenizer
    settings = (backend.truncation, backend.padding)
    encode = fast_encoder(tokenizer, 4)
    assert encode is not None and all(len(r) <= 4 for r in encode(TEXTS))
    assert (backend.truncation, backend.padding) == settings
    assert eng.tokenize_reference(TEXTS) == before
    assert encode(TEXTS) != before  # its own truncation, not the engine's


def test_the_engine_takes_the_fast_path_when_it_matches(tokenizer: Any) -> None:
    eng = make_engine(tokenizer)
    use_fast_tokenizer(eng)
    assert eng.encode is not None
    assert eng.tokenize(TEXTS) == eng.tokenize_reference(TEXTS)
    assert len(eng.tokenize(list(WARM_UP_TEXTS))[-1]) == MAX_LENGTH


class NoEncodeBatchFast:
    def __init__(self) -> None:
        self.backend_tokenizer = object()


class RefusesTruncation:
    class Backend:
        def encode_batch_fast(self, texts: list[str]) -> list[Any]:
            return []

        def no_padding(self) -> None:
            pass

        def enable_truncation(self, max_length: int) -> None:
            raise ValueError("not supported")

    def __init__(self) -> None:
        self.backend_tokenizer = self.Backend()


@pytest.mark.parametrize("odd", [CharTokenizer(), NoEncodeBatchFast(), RefusesTruncation()])
def test_no_fast_path_without_a_usable_rust_tokenizer(odd: Any) -> None:
    assert fast_encoder(odd, MAX_LENGTH) is None


def test_a_tokenizer_without_a_backend_tokenizes_through_transformers() -> None:
    char = CharTokenizer()
    eng = make_engine(char)
    use_fast_tokenizer(eng)
    assert eng.encode is None
    char.calls.clear()
    rows = eng.tokenize(["ab", "x" * 100])
    assert rows == [[1, 97, 98, 2], [1, *[120] * (MAX_LENGTH - 2), 2]]
    assert len(char.calls) == 1 and char.calls[0]["truncation"] is True
    assert char.calls[0]["max_length"] == MAX_LENGTH


def off_by_one(tokenizer: Any, max_length: int) -> Encode | None:
    """The real encoder, cutting one token later: differs on the long warm-up comment only."""
    return fast_encoder(tokenizer, max_length + 1)


def shifted(tokenizer: Any, max_length: int) -> Encode | None:
    real = fast_encoder(tokenizer, max_length)
    assert real is not None
    return lambda texts: [[i + 1 for i in row] for row in real(texts)]


@pytest.mark.parametrize("wrong", [off_by_one, shifted])
def test_an_encoder_with_other_ids_is_not_used(
    tokenizer: Any, wrong: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    eng = make_engine(tokenizer)
    monkeypatch.setattr(engine_module, "fast_encoder", wrong)
    with caplog.at_level(logging.WARNING, logger="worker.engine"):
        use_fast_tokenizer(eng)
    assert eng.encode is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tokenizing through transformers" in warnings[0].getMessage()
    assert eng.tokenize(TEXTS) == eng.tokenize_reference(TEXTS)
