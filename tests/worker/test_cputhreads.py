"""A CPU forward's intra-op threads follow its size (worker.cputhreads)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from emotions.constants import CPU_SERIAL_FORWARD_WORK
from emotions.settings import load_settings
from worker.cputhreads import DEFAULT_HIDDEN, DEFAULT_LAYERS, sized_threads, work_per_token
from worker.device import Forward
from worker.model import ModelHolder


@pytest.fixture
def two_threads() -> object:
    """The process runs its ops on two intra-op threads during the test, as on a 2-core host."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def recording() -> tuple[list[int], Forward]:
    """A forward with the real interface that records the threads it ran on."""
    seen: list[int] = []

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return torch.zeros(inputs["input_ids"].shape[0], 28)

    return seen, forward


def ids(rows: int, width: int) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.ones(rows, width, dtype=torch.long)}


def test_small_forward_runs_on_one_thread_and_gives_them_back(two_threads: object) -> None:
    seen, forward = recording()
    run = sized_threads(forward, per_token=32 * 32 * 2)
    out = run(ids(3, 12))
    assert seen == [1]
    assert out.shape == (3, 28)
    assert torch.get_num_threads() == 2


def test_large_forward_keeps_every_thread(two_threads: object) -> None:
    seen, forward = recording()
    per_token = work_per_token(SimpleNamespace(hidden_size=768, num_hidden_layers=12))
    rows, width = 16, 128  # a full batch of the published model
    assert rows * width * per_token >= CPU_SERIAL_FORWARD_WORK
    sized_threads(forward, per_token)(ids(rows, width))
    assert seen == [2]


def test_the_bound_is_the_work_not_the_rows(two_threads: object) -> None:
    """Just below the bound: one thread; at it: all of them."""
    seen, forward = recording()
    per_token = CPU_SERIAL_FORWARD_WORK // 64
    run = sized_threads(forward, per_token)
    run(ids(1, 63))
    run(ids(1, 64))
    assert seen == [1, 2]


def test_threads_come_back_when_the_forward_raises(two_threads: object) -> None:
    def broken(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        sized_threads(broken, per_token=1)(ids(1, 1))
    assert torch.get_num_threads() == 2


def test_threads_come_back_to_the_count_read_at_wrap_time(two_threads: object) -> None:
    """Another thread changing the count meanwhile does not decide what is restored."""

    def meddling(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        torch.set_num_threads(5)
        return torch.zeros(1, 28)

    sized_threads(meddling, per_token=1)(ids(1, 1))
    assert torch.get_num_threads() == 2


def test_a_single_threaded_process_is_left_alone() -> None:
    _, forward = recording()
    assert sized_threads(forward, per_token=1, threads=1) is forward


def test_work_per_token_reads_the_config_or_assumes_the_published_shape() -> None:
    assert work_per_token(SimpleNamespace(hidden_size=32, num_hidden_layers=2)) == 32 * 32 * 2
    assert work_per_token(SimpleNamespace()) == DEFAULT_HIDDEN**2 * DEFAULT_LAYERS


def test_cpu_worker_runs_its_small_chunks_on_one_thread(
    bert_model: Path, two_threads: object
) -> None:
    """The loaded CPU engine runs a chunk of three comments on one thread, with the labels of
    the fp32 reference, and the process keeps its threads for everything else."""
    holder = ModelHolder(load_settings(model=str(bert_model), device="cpu"))
    holder.load()
    engine = holder.loaded_engine
    seen: list[int] = []
    hook = holder.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    texts = ["great video", "no way", "hmm"]
    try:
        labels = engine.classify_indices(texts)
    finally:
        hook.remove()
    assert seen == [1]
    assert list(labels) == list(holder.reference.indices(engine.tokenize(texts)))
    assert torch.get_num_threads() == 2
