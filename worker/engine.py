"""From a loaded model and the settings to a working :class:`~worker.inference.Engine`.

One place decides how the engine runs (mask format, batch shapes, CUDA graphs), for the worker
and for anything else that drives the same engine on another forward function: the benchmark's
simulated GPU passes its own ``forward``, ``fetch`` and graph runner here (the only seam it
uses; nothing in the worker knows about it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from emotions.constants import GRAPH_MAX_ROWS, GRAPH_WIDTHS, PIPELINE_SLICES
from emotions.settings import Settings
from worker.batching import graph_shapes
from worker.device import Forward, choose_mask_format
from worker.inference import Engine, Fetch, Graphs
from worker.tokens import fast_encoder, same_ids

log = logging.getLogger(__name__)
GraphFactory = Callable[[Engine, dict[int, int]], Graphs]

# Warm-up and graph check: short and long, several scripts, emoji; the last reaches the limit.
WARM_UP_TEXTS: tuple[str, ...] = (
    "warm up",
    "😊",
    "This video made my day, thank you so much!",
    "هذا الفيديو رائع جدا",
    "C'est vraiment génial, j'adore cette chanson !",
    "No entiendo nada, ¿alguien me explica?",
    "Bu video harika, çok teşekkürler!",
    "Wat een mooie video, echt geweldig gedaan.",
    "очень крутое видео спасибо автору",
    "この曲 本当に 大好き です",
    "first!!! 🔥🔥🔥",
    "I can't believe how bad this is, what a waste of time. " * 6,
    "warm up " * 600,
)


def wanted_graph_shapes(settings: Settings, max_length: int) -> dict[int, int]:
    """The shapes to capture: none unless graphs are on and the batch size is a fixed, small
    number (large or ``auto`` batches amortise their launch cost by themselves)."""
    rows = settings.rows_per_batch
    if not settings.cuda_graphs or rows is None or rows > GRAPH_MAX_ROWS:
        return {}
    return graph_shapes(rows, settings.token_budget, max_length, GRAPH_WIDTHS)


def cuda_graphs(engine: Engine, shapes: dict[int, int]) -> Graphs:
    """The real runner: :class:`worker.graphs.CudaGraphs` on the engine's forward step."""
    from worker.graphs import CudaGraphs

    return CudaGraphs(engine.step, shapes, engine.device, engine.pad_id)


def build_engine(
    settings: Settings,
    tokenizer: Any,
    forward: Forward,
    labels: Sequence[str],
    device: torch.device,
    max_length: int,
    *,
    fetch: Fetch | None = None,
    graphs: GraphFactory | None = None,
    asynchronous: bool | None = None,
) -> Engine:
    """An engine for ``forward``; graphs (not yet captured) when the settings want them and
    there is CUDA or a ``graphs`` factory. :func:`warm_up` captures them.

    ``asynchronous`` (default: on CUDA): the device runs while the host works on, so a chunk
    is tokenized in slices that overlap the device. Not on a CPU, where that would only cost
    padding, nor with ``auto`` batches, whose few large forwards would each be cut in two.
    """
    overlap = device.type == "cuda" if asynchronous is None else asynchronous
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    token_id = int(tokenizer(["ok"])["input_ids"][0][0])
    fmt = choose_mask_format(forward, device, pad_id, token_id)
    log.info("attention mask: %s (a prepared mask needs no host-device sync)", fmt)
    engine = Engine(
        tokenizer,
        forward,
        labels,
        device,
        batch_size=settings.rows_per_batch,
        max_length=max_length,
        token_budget=settings.token_budget,
        mask_format=fmt,
        fetch=fetch,
        pipeline=PIPELINE_SLICES if overlap and settings.rows_per_batch is not None else 1,
    )
    engine.run_ahead = overlap
    use_fast_tokenizer(engine)
    shapes = wanted_graph_shapes(settings, max_length)
    factory = graphs or (cuda_graphs if device.type == "cuda" else None)
    if device.type == "cuda":
        engine.gpu_name = f"GPU {device} ({torch.cuda.get_device_name(device)})"
    engine.about.update(
        device=str(device),
        gpu=engine.gpu_name,
        attention="default",
        mask=fmt,
        batch_size=settings.rows_per_batch or "auto",
        token_budget=settings.token_budget,
        max_length=max_length,
        tokenizer="rust fast path" if engine.encode is not None else "transformers",
        graphs=graphs_reason(settings, bool(shapes), factory is not None, fmt),
    )
    if shapes and factory is not None and fmt == "2d":
        log.warning("CUDA graphs off: a forward that waits for the GPU cannot be captured")
    elif shapes and factory is not None:
        engine.graphs = factory(engine, shapes)
    return engine


def graphs_reason(settings: Settings, shapes: bool, runner: bool, fmt: str) -> str:
    """Graphs on or off, and why, as the start-up line says it."""
    if not settings.cuda_graphs:
        return "off (EMOTIONS_CUDA_GRAPHS=false)"
    if not shapes:
        return f"off (batches larger than {GRAPH_MAX_ROWS} rows or auto need none)"
    if not runner:
        return "off (not on CUDA)"
    if fmt == "2d":
        return "off (the 2D mask makes every forward wait for the GPU)"
    return "on (not captured yet)"


def use_fast_tokenizer(engine: Engine) -> None:
    """Tokenize through :func:`worker.tokens.fast_encoder` when it gives the transformers
    call's ids on the warm-up comments (the last one is cut at the model's maximum)."""
    encode = fast_encoder(engine.tokenizer, engine.max_length)
    if encode is None:
        return
    if same_ids(encode, engine.tokenize_reference, WARM_UP_TEXTS):
        engine.encode = encode
    else:
        log.warning(
            "the Rust tokenizer's ids differ from transformers': tokenizing through transformers"
        )


def warm_up(engine: Engine) -> None:
    """Run every kind of batch once, then capture the graphs and check them against eager.

    A graph whose confident labels differ from the eager forward's would change results, so
    any difference drops every graph, loudly: correct and slower beats fast and wrong.
    """
    engine.classify(list(WARM_UP_TEXTS))
    graphs = engine.graphs
    if graphs is None:
        return
    from worker.graphs import verify

    graphs.capture()
    failure = getattr(graphs, "failure", None)
    if failure:
        log.warning("CUDA graphs off, running eagerly: %s", failure)
        engine.about["graphs"] = f"off ({failure})"
        return
    compared, wrong = verify(graphs, engine.logits, engine.tokenize(WARM_UP_TEXTS), engine.pad_id)
    if wrong:
        log.warning(
            "CUDA graphs gave %d of %d confident labels different from eager: graphs "
            "off, running eagerly (set EMOTIONS_CUDA_GRAPHS=false to skip them)",
            wrong,
            compared,
        )
        graphs.drop()
        engine.about["graphs"] = f"off ({wrong} labels differed from eager)"
        return
    log.info("CUDA graphs match eager on %d sample rows", compared)
    engine.about["graphs"] = f"on ({len(graphs.shapes)} shapes)"
    engine.classify(list(WARM_UP_TEXTS))  # the first replays, untimed
