"""The worker's own engine, built by the worker's own :func:`~worker.engine.build_engine`, on the
simulated GPU of :mod:`bench.sim`: in the benchmark's process, and in a real Celery worker
through :mod:`bench.sim_worker`. All its timings are MODELLED (see :mod:`bench.sim`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import torch

from bench.sim import PROFILES, BagLogits, SimDevice, SimForward, SimGraphs
from emotions.settings import Settings
from worker.engine import build_engine, warm_up
from worker.inference import ChunkStats, Engine

# Bench-only environment of a simulated worker (read by bench/sim_worker.py, nowhere else).
SIMULATE_ENV = "BENCH_SIMULATE"  # profile name: h100, t4, a100, null
PROXY_ENV = "BENCH_SIM_PROXY"  # folder of the 12-layer, hidden-16 host-cost model
LOG_ENV = "BENCH_SIM_LOG"  # JSON Lines file: one line per finished chunk


def sim_engine(settings: Settings, profile: str, proxy_dir: Path) -> tuple[Engine, SimDevice]:
    """A warmed-up engine with the settings' batch shapes, on a fresh simulated ``profile`` GPU.

    The tokenizer is the real one of ``settings.model``; the forward is :class:`SimForward`
    over the proxy model in ``proxy_dir`` (none for the ``null`` profile).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from worker.device import limit_tokenizer_threads, tokenizer_threads
    from worker.model import _model_max_length, labels_from_config

    limit_tokenizer_threads(tokenizer_threads(settings.tokenizer_threads, "cuda:0"))
    tokenizer = AutoTokenizer.from_pretrained(settings.model)
    proxy = AutoModelForSequenceClassification.from_pretrained(
        proxy_dir, attn_implementation="sdpa"
    ).eval()
    device = SimDevice(PROFILES[profile])
    labels = labels_from_config(proxy.config)
    forward = SimForward(
        proxy if profile != "null" else None, device, BagLogits(len(tokenizer), len(labels))
    )
    max_length = settings.max_length or _model_max_length(tokenizer, proxy.config)

    def graphs(engine: Engine, shapes: dict[int, int]) -> SimGraphs:
        return SimGraphs(engine, shapes, device)

    engine = build_engine(
        settings,
        tokenizer,
        forward,
        labels,
        torch.device("cpu"),
        max_length,
        fetch=device.fetch,
        graphs=graphs,
        asynchronous=True,
    )
    warm_up(engine)
    return engine, device


class ChunkLog:
    """Appends one JSON line per finished chunk: its wall-clock end, its engine stats and the
    simulated device's counters, so another process can compute rates and duty cycles."""

    def __init__(self, path: Path, device: SimDevice) -> None:
        self.path, self.device = path, device
        self._lock = threading.Lock()

    def __call__(self, stats: ChunkStats) -> None:
        record: dict[str, Any] = dict(vars(stats))
        record.update(
            end=time.time(),
            busy_s=self.device.busy_s,
            syncs=self.device.syncs,
            gpu_forwards=self.device.forwards,
            pid=os.getpid(),
        )
        line = json.dumps(record) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)


def read_log(path: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """The chunks of a :class:`ChunkLog` that ended after ``since`` (a ``time.time()``)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if r["end"] > since]
