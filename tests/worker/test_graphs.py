"""CUDA graphs: the bucketing and planning on the CPU, the engine's graph path with a stand-in
runner, the eager check that drops wrong graphs; the capture itself only where CUDA exists.

On a CPU machine the worker never builds graphs (there is nothing to launch cheaply), and the
CUDA test below is skipped with that reason.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from emotions.constants import GRAPH_WIDTHS
from emotions.settings import load_settings
from harness.standins import SEED_SENTENCES
from worker.batching import bucket_for, graph_shapes, pad_ids, plan_batches
from worker.engine import build_engine, wanted_graph_shapes, warm_up
from worker.graphs import disagreements
from worker.inference import Engine
from worker.model import ModelHolder, load_pretrained

# Rows at each width bucket: 16, and no more than 1024 tokens.
DEFAULT = dict.fromkeys(range(8, 65, 8), 16) | {
    80: 12,
    96: 10,
    112: 9,
    128: 8,
    160: 6,
    192: 5,
    224: 4,
    256: 4,
    320: 3,
    384: 2,
    448: 2,
    512: 2,
}


def test_default_shapes_at_batch_16_and_budget_1024() -> None:
    assert graph_shapes(16, 1024, 512, GRAPH_WIDTHS) == DEFAULT
    assert graph_shapes(16, 0, 512, GRAPH_WIDTHS) == dict.fromkeys(DEFAULT, 16)  # no budget
    # A shorter maximum is a bucket of its own; wider buckets are never needed.
    assert graph_shapes(16, 1024, 100, GRAPH_WIDTHS) == {
        **{w: DEFAULT[w] for w in DEFAULT if w < 100},
        100: 10,
    }


def test_bucket_is_the_smallest_that_holds_the_length() -> None:
    buckets = sorted(DEFAULT)
    found = [bucket_for(n, buckets) for n in (1, 8, 9, 17, 100, 384, 385, 512)]
    assert found == [8, 8, 16, 24, 112, 384, 448, 512]
    assert bucket_for(513, buckets) is None


def test_bucketed_plan_runs_only_captured_shapes() -> None:
    rng = random.Random(4)
    lengths = [rng.choice([3, 9, 14, 20, 33, 60, 97, 130, 250, 400, 512]) for _ in range(512)]
    plan = plan_batches(lengths, 16, 1024, DEFAULT)
    flat = np.concatenate(plan.batches).tolist()
    assert sorted(flat) == list(range(512))  # every comment exactly once
    for batch, (rows, width) in zip(plan.batches, plan.shapes, strict=True):
        assert DEFAULT[width] == rows and len(batch) <= rows
        assert max(lengths[i] for i in batch) <= width
        assert bucket_for(lengths[batch[0]], sorted(DEFAULT)) == width  # the tightest bucket
    assert [len(b) for b in plan.batches[:-1]] == [r for r, _ in plan.shapes[:-1]]  # full...
    assert plan.padded_tokens == sum(r * w for r, w in plan.shapes)  # ...but the last
    unbucketed = plan_batches(lengths, 16, 1024)
    assert 0.6 < plan.efficiency < unbucketed.efficiency


def test_dummy_rows_attend_to_one_padding_token() -> None:
    ids, lengths = pad_ids([[5, 6, 7], [8]], pad_id=1, width=4, n_rows=4)
    assert ids.tolist() == [[5, 6, 7, 1], [8, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert lengths.tolist() == [3, 1, 1, 1]


def test_graphs_are_wanted_only_for_a_small_fixed_batch() -> None:
    assert wanted_graph_shapes(load_settings(device="cpu"), 512) == DEFAULT
    assert wanted_graph_shapes(load_settings(device="cpu", cuda_graphs=False), 512) == {}
    assert wanted_graph_shapes(load_settings(device="cpu", batch_size="auto"), 512) == {}
    assert wanted_graph_shapes(load_settings(device="cpu", batch_size=128), 512) == {}


def test_disagreements_count_only_confident_rows() -> None:
    eager = torch.tensor([[3.0, 1.0, 0.0], [1.0, 0.99, 0.0], [0.0, 0.0, 2.0]])
    assert disagreements(eager, torch.tensor([0, 0, 2]), 0.05) == 0
    assert disagreements(eager, torch.tensor([0, 1, 2]), 0.05) == 0  # a near tie may flip
    assert disagreements(eager, torch.tensor([1, 0, 0]), 0.05) == 2


class StandInGraphs:
    """The runner's interface on the CPU: "captures" the wanted shapes, runs the engine's own
    step on the fixed shape (so padding and dummy rows go through the model), and records."""

    def __init__(self, engine: Engine, wanted: dict[int, int], flip: bool = False) -> None:
        self.engine, self.wanted, self.flip = engine, wanted, flip
        self.shapes: dict[int, int] = {}
        self.device = engine.device
        self.ran: list[tuple[int, int]] = []

    def capture(self) -> None:
        self.shapes = dict(self.wanted)

    def run(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        assert self.shapes[ids.shape[1]] == ids.shape[0]  # exactly a captured shape
        self.ran.append(ids.shape)
        top1 = self.engine.step(torch.from_numpy(ids), torch.from_numpy(lengths))
        return (top1 + 1) % len(self.engine.labels) if self.flip else top1

    def drop(self) -> None:
        self.shapes.clear()


@pytest.fixture(scope="module")
def loaded(bert_model: Path) -> tuple[Any, Any]:
    return load_pretrained(str(bert_model), torch.float32)


def engine_with(loaded: tuple[Any, Any], flip: bool = False, **overrides: Any) -> Engine:
    tokenizer, model = loaded
    settings = load_settings(device="cpu", **overrides)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return build_engine(
        settings,
        tokenizer,
        lambda x: model(**x).logits,
        labels,
        torch.device("cpu"),
        512,
        graphs=lambda e, shapes: StandInGraphs(e, shapes, flip),
    )


def test_engine_runs_captured_shapes_with_eager_labels(loaded: tuple[Any, Any]) -> None:
    texts = [*SEED_SENTENCES, *(s * 9 for s in SEED_SENTENCES), "", "🔥", "wow " * 400] * 3
    engine = engine_with(loaded)
    graphs = engine.graphs
    assert isinstance(graphs, StandInGraphs) and graphs.shapes == {}  # not before warm-up
    warm_up(engine)
    assert graphs.shapes == DEFAULT
    graphs.ran.clear()
    labels = engine.classify(texts)
    assert graphs.ran and all(DEFAULT[w] == r for r, w in graphs.ran)
    assert engine.totals.graph_forwards > 0
    assert labels == engine_with(loaded, cuda_graphs=False).classify(texts)


def test_warm_up_drops_graphs_whose_labels_differ(
    loaded: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_with(loaded, flip=True)
    with caplog.at_level(logging.WARNING, logger="worker.engine"):
        warm_up(engine)
    assert engine.graphs is not None and engine.graphs.shapes == {}
    assert "graphs off" in caplog.text
    texts = list(SEED_SENTENCES)
    assert engine.classify(texts) == engine_with(loaded, cuda_graphs=False).classify(texts)


def test_the_cpu_worker_builds_no_graphs(bert_model: Path) -> None:
    """CUDA graphs are a CUDA feature: on a CPU the default settings run eagerly."""
    holder = ModelHolder(load_settings(model=str(bert_model), device="cpu"))
    assert holder.settings.cuda_graphs and holder.engine.graphs is None


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="capture and replay need a CUDA device; this machine has none",
)
def test_cuda_graphs_give_eager_fp16_labels(bert_model: Path) -> None:
    texts = [*SEED_SENTENCES, *(s * 9 for s in SEED_SENTENCES), "", "wow " * 400] * 4
    graphed = ModelHolder(load_settings(model=str(bert_model), device="cuda")).engine
    eager = ModelHolder(load_settings(model=str(bert_model), device="cuda", cuda_graphs=False))
    assert graphed.graphs is not None and graphed.graphs.shapes
    before = graphed.totals.graph_forwards
    assert graphed.classify(texts) == eager.engine.classify(texts)
    assert graphed.totals.graph_forwards > before


# --- EMOTIONS_BATCH_SIZE=auto: the token budget sizes batches --------------------------------


def brute_force_cost(desc: list[int], budget: int, forward: int) -> int:
    """The least padded tokens + ``forward`` per batch over every way to cut ``desc``."""
    best = [0] + [10**12] * len(desc)
    for j in range(1, len(desc) + 1):
        for i in range(j):
            tokens = (j - i) * desc[i]
            if tokens <= budget or j - i == 1:
                best[j] = min(best[j], best[i] + forward + tokens)
    return best[-1]


@pytest.mark.parametrize("seed", range(6))
def test_auto_plan_is_the_cheapest_cut(seed: int) -> None:
    from emotions.constants import AUTO_FORWARD_TOKENS

    rng = random.Random(seed)
    lengths = [rng.choice([5, 8, 8, 12, 20, 40, 90, 200, 512]) for _ in range(60)]
    budget = rng.choice([512, 2048, 16384])
    plan = plan_batches(lengths, None, budget)
    assert sorted(np.concatenate(plan.batches).tolist()) == list(range(60))
    assert all(r * w <= budget or r == 1 for r, w in plan.shapes)
    cost = plan.padded_tokens + AUTO_FORWARD_TOKENS * len(plan.batches)
    desc = sorted(lengths, reverse=True)
    assert cost == brute_force_cost(desc, budget, AUTO_FORWARD_TOKENS)


def test_auto_plan_does_not_pad_many_comments_to_the_longest() -> None:
    """Filling a 16,384-token batch would pad the 32 longest comments to 512 tokens."""
    lengths = [512, 400, 300] + [30] * 29 + [12] * 480
    auto = plan_batches(lengths, None, 16384)
    filled = plan_batches(lengths, 512, 16384)  # a row cap that never binds: fill to budget
    assert auto.efficiency > 0.85 > 0.5 > filled.efficiency
    assert len(auto.batches) <= 5


def test_no_graphs_when_only_the_2d_mask_works(
    loaded: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """transformers 4.44's BERT takes only a 2D mask under SDPA, and checks it on the host:
    such a forward cannot be captured, so the engine runs eagerly (and says so)."""
    tokenizer, model = loaded

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if inputs["attention_mask"].dim() != 2:
            raise ValueError("too many values to unpack (expected 2)")
        return model(**inputs).logits

    with caplog.at_level(logging.WARNING):
        settings = load_settings(device="cpu")
        cpu = torch.device("cpu")
        engine = build_engine(
            settings, tokenizer, forward, ["x"] * 28, cpu, 512, graphs=StandInGraphs
        )
    assert engine.mask_format == "2d" and engine.graphs is None
    assert "cannot be captured" in caplog.text
