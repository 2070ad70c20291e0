"""The CUDA path's defects, each shown on the CPU: what would stall, crash or mislabel on a GPU.

- the dtype keyword of ``from_pretrained`` must follow the installed transformers;
- a chunk makes no host-device synchronisation but the one that fetches its labels (counted
  with a dispatch mode: the ops that wait for a GPU are dispatched on a CPU all the same);
- out-of-memory recovery runs after the failed forward is freed, does not nest, and knows
  every way torch and cuBLAS report it;
- top-1 is not decided by float32 sigmoid scores that saturate at 1.0;
- the tokenizer's threads are limited per worker.
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import subprocess
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from emotions.errors import InferenceOOMError
from emotions.settings import load_settings
from harness.procs import ROOT
from harness.standins import GO_EMOTIONS, SEED_SENTENCES
from worker.inference import Engine
from worker.model import ModelHolder

LABELS = list(GO_EMOTIONS)
TEXTS = [*SEED_SENTENCES, *(s * 7 for s in SEED_SENTENCES), "", "ok", "wow " * 300]


class Syncs(TorchDispatchMode):
    """Counts dispatched ops that read a device value on the host (each would wait for a GPU).

    Defined here, not taken from the code under test, so the count cannot share its blind spots.
    """

    WAITING = frozenset(
        {"is_nonzero", "_local_scalar_dense", "item", "equal", "nonzero", "masked_select"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.overloadpacket.__name__ in self.WAITING:
            self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in [k for k in os.environ if k.startswith("EMOTIONS_")]:
        monkeypatch.delenv(name)
    yield


def holder(model: Path, **overrides: Any) -> ModelHolder:
    return ModelHolder(load_settings(model=str(model), device="cpu", **overrides))


class CharTokenizer:
    pad_token_id = 0

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        return {
            "input_ids": [
                [1, *(ord(c) % 500 + 10 for c in t)][: kwargs["max_length"]] for t in texts
            ]
        }


def fake_engine(forward: Any, batch_size: int = 8) -> Engine:
    return Engine(
        CharTokenizer(), forward, LABELS, torch.device("cpu"), batch_size=batch_size, max_length=64
    )


def logits_for(ids: torch.Tensor) -> torch.Tensor:
    """Label = (first content token) mod 28, decided by a clear margin."""
    out = torch.full((ids.shape[0], len(LABELS)), -2.0)
    out[torch.arange(ids.shape[0]), ids[:, 1] % len(LABELS)] = 3.0
    return out


def expected(texts: list[str]) -> list[int]:
    return [(ord(t[0]) % 500 + 10) % len(LABELS) for t in texts]


# --- 1. dtype keyword ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "keyword"),
    [
        ("4.44.2", "torch_dtype"),
        ("4.55.4", "torch_dtype"),
        ("4.56.0", "dtype"),
        ("4.56.0.dev0", "dtype"),
        ("5.0.0rc1", "dtype"),
        ("5.24.0", "dtype"),
    ],
)
def test_dtype_keyword_follows_the_transformers_version(version: str, keyword: str) -> None:
    from worker.device import dtype_keyword

    assert dtype_keyword(version) == keyword


def test_load_passes_torch_dtype_to_transformers_older_than_4_56(
    bert_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers 4.44-4.55 (which the package allows) hand an unknown ``dtype=`` to the
    model's constructor, which raises TypeError: the worker would never start."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    calls: list[dict[str, Any]] = []
    real = AutoModelForSequenceClassification.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", spy)
    monkeypatch.setattr(transformers, "__version__", "4.55.4")
    holder(bert_model).load()
    assert calls and all("torch_dtype" in c and "dtype" not in c for c in calls)
    calls.clear()
    monkeypatch.setattr(transformers, "__version__", "4.56.1")
    holder(bert_model).load()
    assert calls and all("dtype" in c and "torch_dtype" not in c for c in calls)


# --- 2. one synchronisation per chunk ------------------------------------------------------


def test_no_op_inside_a_chunk_waits_for_the_device(any_model: Path) -> None:
    """A transformers SDPA forward given a 2D mask asks ``mask.all()`` as a Python bool: one
    wait per forward. The engine's prepared mask and device-side top-1 read nothing back."""
    engine = holder(any_model, batch_size=4).engine
    forwards: list[int] = []
    forward = engine.forward

    def counted(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        forwards.append(len(inputs["input_ids"]))
        return forward(inputs)

    engine.forward = counted
    with Syncs() as syncs:
        indices = engine.classify_indices(TEXTS)
    assert len(forwards) >= 8  # several forwards, so one sync per forward would show
    assert syncs.counts == Counter(), f"{syncs.counts} over {len(forwards)} forwards"
    np.testing.assert_array_equal(
        indices, holder(any_model, batch_size=1).engine.classify_indices(TEXTS)
    )


def test_the_one_wait_is_a_single_fetch_of_the_chunks_labels(bert_model: Path) -> None:
    """The copy of the chunk's labels is queued when the chunk is (behind its forwards, so work
    queued later cannot delay it); the wait for it happens once, in ``indices()``."""
    engine = holder(bert_model, batch_size=4).engine
    copies: list[int] = []
    waits: list[int] = []
    fetch = engine.fetch

    def counted(top1: torch.Tensor) -> Callable[[], np.ndarray]:
        copies.append(len(top1))
        wait = fetch(top1)

        def counted_wait() -> np.ndarray:
            waits.append(len(top1))
            return wait()

        return counted_wait

    engine.fetch = counted
    pending = engine.submit(TEXTS)
    assert copies == [len(TEXTS)] and waits == []  # copy queued, not waited for
    indices = pending.indices()
    assert copies == waits == [len(TEXTS)] and len(indices) == len(TEXTS)
    assert pending.stats.forwards == len(engine.last_plan.batches) >= 8


def test_the_mask_probe_takes_the_first_format_without_a_sync() -> None:
    from worker.device import attention_mask, choose_mask_format

    def model(refuse: tuple[int, ...], sync: bool) -> Any:
        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            mask = inputs["attention_mask"]
            if mask.dim() in refuse:
                raise ValueError(f"Wrong shape for attention_mask {tuple(mask.shape)}")
            if sync and bool(mask.all()):  # what transformers' SDPA path does with a 2D mask
                pass
            keep = mask.reshape(mask.shape[0], -1).float()
            return (keep.sum(dim=1, keepdim=True) * torch.arange(5.0))[:, :5]

        return forward

    cpu = torch.device("cpu")
    assert choose_mask_format(model((), sync=False), cpu, 0, 7) == "4d"
    assert choose_mask_format(model((4,), sync=False), cpu, 0, 7) == "3d"
    assert choose_mask_format(model((4, 3), sync=False), cpu, 0, 7) == "2d"
    assert choose_mask_format(model((), sync=True), cpu, 0, 7) == "2d"  # every format syncs
    lengths = torch.tensor([3, 1])
    assert attention_mask(lengths, 4, "4d").shape == (2, 1, 1, 4)
    assert attention_mask(lengths, 4, "2d").tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]


def test_real_models_take_the_prepared_mask_with_identical_logits(any_model: Path) -> None:
    h = holder(any_model)
    engine = h.engine
    assert engine.mask_format == "4d"
    tokens = engine.tokenize(TEXTS[:6])
    from worker.batching import pad

    ids, mask = pad(tokens, engine.pad_id)
    with torch.inference_mode():
        two_d = h.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        lengths = torch.from_numpy(mask.sum(axis=1))
        prepared = engine.logits(torch.from_numpy(ids), lengths)
    torch.testing.assert_close(prepared, two_d.logits, rtol=0, atol=1e-6)


# --- 3. out of memory -----------------------------------------------------------------------


class Activation:
    """Stands in for a failed forward's activations: alive as long as its frame is."""


def test_oom_retry_runs_after_the_failed_forward_is_freed() -> None:
    failed: list[weakref.ref[Activation]] = []
    alive_at_retry: list[int] = []

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        gc.collect()
        alive_at_retry.append(sum(ref() is not None for ref in failed))
        ids = inputs["input_ids"]
        if ids.shape[0] > 2:
            activations = Activation()
            failed.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return logits_for(ids)

    texts = [chr(40 + i) * (1 + i % 5) for i in range(8)]
    assert fake_engine(forward).classify_indices(texts).tolist() == expected(texts)
    assert failed and alive_at_retry[1:] == [0] * (len(alive_at_retry) - 1)


def test_oom_halving_does_not_nest() -> None:
    depths: list[int] = []

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        depths.append(len(inspect.stack(0)))
        if inputs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return logits_for(inputs["input_ids"])

    texts = [chr(40 + i) for i in range(32)]
    assert fake_engine(forward, batch_size=32).classify_indices(texts).tolist() == expected(texts)
    assert len(depths) == 63 and len(set(depths)) == 1  # 31 halvings, 32 single rows


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("CUDA error: out of memory"),
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
def test_every_form_of_device_oom_is_split(error: BaseException) -> None:
    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if inputs["input_ids"].shape[0] > 2:
            raise error
        return logits_for(inputs["input_ids"])

    texts = [chr(50 + i) * 3 for i in range(9)]
    assert fake_engine(forward).classify_indices(texts).tolist() == expected(texts)


def test_oom_is_recognised_on_a_torch_without_torch_out_of_memory_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda_oom = torch.cuda.OutOfMemoryError
    monkeypatch.delattr(torch, "OutOfMemoryError")  # as in the oldest torch the package allows

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if inputs["input_ids"].shape[0] > 1:
            raise cuda_oom("CUDA out of memory (injected)")
        return logits_for(inputs["input_ids"])

    texts = [chr(60 + i) for i in range(5)]
    assert fake_engine(forward).classify_indices(texts).tolist() == expected(texts)
    with pytest.raises(InferenceOOMError):
        fake_engine(lambda _: (_ for _ in ()).throw(cuda_oom("OOM"))).classify_indices(["a"])


# --- 4. top-1 of saturated scores ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_saturated_sigmoid_scores_do_not_hide_the_highest_logit(dtype: torch.dtype) -> None:
    """sigmoid(20) and sigmoid(25) are both exactly 1.0 in float32: argmax of the scores would
    say label 3, the model says label 7."""
    assert torch.sigmoid(torch.tensor([20.0, 25.0])).tolist() == [1.0, 1.0]

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = torch.full((inputs["input_ids"].shape[0], len(LABELS)), -5.0, dtype=dtype)
        logits[:, 3], logits[:, 7] = 20.0, 25.0
        return logits

    assert fake_engine(forward).classify(["a", "bb", "ccc"]) == [LABELS[7]] * 3


# --- 5. tokenizer threads --------------------------------------------------------------------

_THREADS = """
import json, os, sys
from emotions.settings import load_settings
from worker.model import ModelHolder
def threads(): return len(os.listdir("/proc/self/task"))
before = threads()
engine = ModelHolder(load_settings(model=sys.argv[1], device="cpu")).engine
engine.tokenize(["a fairly long comment to tokenize " * 20] * 4000)
print(json.dumps({"added": threads() - before}))
"""


@pytest.mark.parametrize("setting", ["1", "3"])
def test_tokenizer_threads_are_limited_per_worker(bert_model: Path, setting: str) -> None:
    """Rust's thread pool starts one thread per core unless told otherwise; with several
    workers per host each would take every core. A fresh process, as a pool child is."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")
    }
    env.update(
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        EMOTIONS_TOKENIZER_THREADS=setting,
    )
    out = subprocess.run(
        [sys.executable, "-c", _THREADS, str(bert_model)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    added = json.loads(out.stdout.strip().splitlines()[-1])["added"]
    assert added == (0 if setting == "1" else int(setting)), out.stderr[-2000:]


def test_automatic_tokenizer_threads_share_the_cores() -> None:
    from worker.device import tokenizer_threads

    cores = len(os.sched_getaffinity(0))
    assert tokenizer_threads(3, "cpu") == 3
    assert tokenizer_threads(0, "cpu") == max(1, min(8, cores))
