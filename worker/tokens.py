"""Token ids straight from the Rust tokenizer, skipping what the worker never reads.

The worker needs only each comment's token ids. Called through transformers, a fast tokenizer
also computes every token's character offsets and builds Python lists for them, and the
wrapper re-applies its truncation settings on every call: about a fifth of the tokenizing
time, which on a GPU host is the largest host cost per comment. ``encode_batch_fast``
(tokenizers 0.20 and later) returns the same ids without the offsets.

It is used only where it gives exactly the ids the transformers call gives: the engine's
builder compares both on sample comments (long ones included, so truncation is compared too)
and keeps the transformers call on any difference.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Encode = Callable[[list[str]], list[list[int]]]


def fast_encoder(tokenizer: Any, max_length: int) -> Encode | None:
    """Ids of each text, truncated to ``max_length``, from a private copy of the Rust
    tokenizer (its truncation set once); None when the tokenizer has no such path."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    try:
        own = copy.deepcopy(backend)  # the wrapper sets its own copy's truncation per call
        own.no_padding()
        own.enable_truncation(max_length)
    except Exception as e:  # an unusual backend: keep the transformers call
        log.info("tokenizing through transformers: %r", e)
        return None

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in own.encode_batch_fast(texts)]

    return encode


def same_ids(encode: Encode, reference: Encode, samples: Sequence[str]) -> bool:
    """Whether ``encode`` gives exactly ``reference``'s ids for every sample."""
    return encode(list(samples)) == reference(list(samples))
