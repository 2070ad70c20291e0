"""Looking at the next chunk early (worker.prefetch) and the engine's use of it. The fake
forward's label is each row's first character, so rows of a chunk queued ahead that came back
mixed up or out of order show as wrong labels."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from celery.concurrency import prefork, solo, thread

from emotions.constants import CLASSIFY_TASK, LOOK_AHEAD_CHUNKS
from tests.worker.test_gpu_path import expected, fake_engine, logits_for
from worker.lookahead import KEPT as PREFETCH_KEPT
from worker.prefetch import next_chunks, pool_name, prefetch_multiplier

MODEL = "org/model@v1"
A = [chr(40 + i) * (1 + i % 5) for i in range(10)]
B = [chr(200 + i) * (2 + i % 3) for i in range(9)]
C = [chr(600 + i) * 3 for i in range(6)]

# --- pool_name / prefetch_multiplier ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "name"),
    [
        ("threads", "threads"),
        ("prefork", "prefork"),
        ("solo", "solo"),
        ("celery.concurrency.thread:TaskPool", "threads"),
        (thread.TaskPool, "threads"),
        (prefork.TaskPool, "prefork"),
        (solo.TaskPool, "solo"),
        ("celery.concurrency.prefork:TaskPool", "prefork"),
        ("celery.concurrency.solo:TaskPool", "solo"),
    ],
)
def test_pool_name(pool: Any, name: str) -> None:
    assert pool_name(pool) == name


def test_a_threads_pool_reserves_the_chunks_it_looks_ahead_to() -> None:
    assert LOOK_AHEAD_CHUNKS >= 1
    assert prefetch_multiplier("threads", 1) == 1 + LOOK_AHEAD_CHUNKS
    assert prefetch_multiplier("threads", 10) == 10
    assert (prefetch_multiplier("prefork", 1), prefetch_multiplier("prefork", 4)) == (1, 4)


# --- next_chunks ------------------------------------------------------------------------------


@dataclass(eq=False)  # hashable by identity, as Celery's requests are
class FakeRequest:
    id: str
    name: str
    args: tuple[Any, ...]


def chunk(rid: str, texts: Any, model: str = MODEL) -> FakeRequest:
    return FakeRequest(rid, CLASSIFY_TASK, ("job", 0, texts, model, "file.csv"))


def test_next_chunks_lists_the_waiting_chunks_of_this_model() -> None:
    requests = [
        chunk("current", ["mine"]),
        chunk("b", ["b1", "b2"]),
        FakeRequest("other-task", "emotions.something_else", ("job", 0, ["x"], MODEL, "f")),
        chunk("other-model", ["y"], model="org/other@v2"),
        FakeRequest("short", CLASSIFY_TASK, ("job", 0, ["z"])),
        chunk("not-a-list", "a string, not texts"),
        FakeRequest("no-args", CLASSIFY_TASK, ()),
        chunk("c", ["c1"]),
    ]
    assert next_chunks("current", MODEL, requests) == [["b1", "b2"], ["c1"]]
    assert next_chunks(None, MODEL, requests) == [["mine"], ["b1", "b2"], ["c1"]]
    assert next_chunks("current", "org/absent@v1", requests) == []


def test_next_chunks_outside_a_worker_is_empty() -> None:
    assert next_chunks("any", MODEL) == []


def test_next_chunks_of_a_set_changing_while_read_is_no_guess() -> None:
    def changing() -> Iterator[FakeRequest]:
        yield chunk("b", ["b"])
        raise RuntimeError("Set changed size during iteration")

    assert next_chunks("current", MODEL, changing()) == []


# --- Engine look-ahead ------------------------------------------------------------------------


class Forward:
    """The fake forward, counting its rows; raises once on a batch holding ``fail_on`` texts."""

    def __init__(self, fail_on: list[str] | None = None) -> None:
        self.rows = 0
        self.fail_ids = {ord(t[0]) % 500 + 10 for t in fail_on or []}

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = inputs["input_ids"]
        if self.fail_ids & set(ids[:, 1].tolist()):
            self.fail_ids = set()
            raise RuntimeError("device error (injected)")
        self.rows += ids.shape[0]
        return logits_for(ids)


def fresh(texts: list[str]) -> list[int]:
    """Labels of an engine that never looks ahead."""
    return fake_engine(Forward(), batch_size=4).classify_indices(texts).tolist()


def test_the_next_chunk_is_queued_before_this_one_waits() -> None:
    forward = Forward()
    eng = fake_engine(forward, batch_size=4)
    eng.run_ahead = True
    pa = eng.submit(A, ahead=lambda: [B])
    assert forward.rows == len(A)
    labels_a = pa.indices().tolist()
    assert forward.rows == len(A) + len(B)  # B's forwards queued inside A's wait
    pb = eng.submit(B)
    assert forward.rows == len(A) + len(B)  # and not run again
    assert (pb.stats.dispatched_ahead, pb.stats.tokenized_ahead) == (1, 1)
    assert (pa.stats.dispatched_ahead, pa.stats.tokenized_ahead) == (0, 0)
    labels_b = pb.indices().tolist()
    assert labels_a == fresh(A) == expected(A)
    assert labels_b == fresh(B) == expected(B)
    assert (eng.totals.dispatched_ahead, eng.totals.tokenized_ahead) == (1, 1)
    assert eng.totals.comments == len(A) + len(B)


def test_without_run_ahead_the_next_chunk_is_only_tokenized() -> None:
    forward = Forward()
    eng = fake_engine(forward, batch_size=4)
    assert eng.run_ahead is False  # the CPU default
    labels_a = eng.submit(A, ahead=lambda: [B]).indices().tolist()
    assert forward.rows == len(A)
    pb = eng.submit(B)
    assert (pb.stats.dispatched_ahead, pb.stats.tokenized_ahead) == (0, 1)
    assert labels_a == expected(A)
    assert pb.indices().tolist() == fresh(B) == expected(B)


@pytest.mark.parametrize("run_ahead", [True, False])
def test_an_ahead_that_raises_costs_nothing(
    run_ahead: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def ahead() -> list[list[str]]:
        raise ConnectionError("state unreadable")

    eng = fake_engine(Forward(), batch_size=4)
    eng.run_ahead = run_ahead
    with caplog.at_level(logging.WARNING, logger="worker.inference"):
        pa = eng.submit(A, ahead=ahead)
        assert pa.indices().tolist() == expected(A)
    assert "could not tokenize the next chunk ahead" in caplog.text
    pb = eng.submit(B)
    assert (pb.stats.dispatched_ahead, pb.stats.tokenized_ahead) == (0, 0)
    assert pb.indices().tolist() == expected(B)


def test_a_forward_failing_on_the_chunk_queued_ahead_leaves_it_to_its_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forward = Forward(fail_on=B)
    eng = fake_engine(forward, batch_size=4)
    eng.run_ahead = True
    with caplog.at_level(logging.WARNING, logger="worker.inference"):
        assert eng.submit(A, ahead=lambda: [B]).indices().tolist() == expected(A)
    assert "could not queue the next chunk ahead" in caplog.text
    assert forward.fail_ids == set()  # the failure did happen, while A waited
    pb = eng.submit(B)
    assert (pb.stats.dispatched_ahead, pb.stats.tokenized_ahead) == (0, 1)
    assert pb.indices().tolist() == fresh(B) == expected(B)


@pytest.mark.parametrize("run_ahead", [True, False])
def test_a_chunk_prefetched_but_never_submitted_changes_no_labels(run_ahead: bool) -> None:
    eng = fake_engine(Forward(), batch_size=4)
    eng.run_ahead = run_ahead
    eng.prefetch(C)
    assert eng.submit(A, ahead=lambda: [C]).indices().tolist() == expected(A)
    pb = eng.submit(B)
    assert pb.stats.tokenized_ahead == 0
    assert pb.indices().tolist() == expected(B)
    assert eng.classify_indices(A[::-1]).tolist() == expected(A[::-1])


def test_only_the_last_prefetched_chunks_are_kept() -> None:
    eng = fake_engine(Forward(), batch_size=4)
    chunks = [[chr(70 + k) + str(i) for i in range(3)] for k in range(PREFETCH_KEPT + 2)]
    for texts in chunks:
        eng.prefetch(texts)
    assert len(eng.ahead) == PREFETCH_KEPT
    oldest, newest = eng.submit(chunks[0]), eng.submit(chunks[-1])
    assert (oldest.stats.tokenized_ahead, newest.stats.tokenized_ahead) == (0, 1)
    assert oldest.indices().tolist() == expected(chunks[0])
    assert newest.indices().tolist() == expected(chunks[-1])
