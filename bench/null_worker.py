"""``python -m bench.null_worker worker -Q inference ...``: a real Celery worker without a model.

Benchmark-only, for measuring the control plane (producer, results worker, Redis) alone. The
process is the production worker (``worker.celery.app``, its tasks, its signals, its pool
child, :func:`worker.chunk.classify` and the job store's scripts); only the engine is null:
every comment gets a label at once, from its text's length, without tokenizing. A GPU that
keeps up with anything, so whatever limits the rate is the control plane.

The patch is applied in the worker's main process when run as a program (:func:`install`),
before the pool forks, so the pool child inherits it; importing the module changes nothing.
Labels are the model config's (``EMOTIONS_MODEL``), read as the real load reads them, so the
stored labels and the output are shaped exactly as in production.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.celery import app
from worker.model import ModelHolder, State, labels_from_config
from worker.pending import ChunkStats, Pending


class NullEngine:
    """The part of :class:`~worker.inference.Engine` a chunk task uses, with no model."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def submit(self, texts: Sequence[str], ahead: Any = None) -> Pending:
        """Labels at once: comment ``i`` gets label ``len(text) mod the label count``."""
        count = len(self.labels)
        labels = np.fromiter((len(t) % count for t in texts), dtype=np.int64, count=len(texts))
        return Pending(
            order=np.arange(len(texts)),
            result=lambda: labels,
            stats=ChunkStats(comments=len(texts)),
        )


def load(self: ModelHolder) -> None:
    """The null engine, with the label names of the configured model's config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(self.settings.model)
    self._engine = NullEngine(labels_from_config(config))  # type: ignore[assignment]
    self.state = State.LOADED


def warm_up(self: ModelHolder) -> None:
    """Nothing to warm up."""
    self.state = State.READY


def install() -> None:
    """Give every model holder of this process the null engine (before the pool forks)."""
    ModelHolder.load = load  # type: ignore[method-assign]
    ModelHolder.warm_up = warm_up  # type: ignore[method-assign]


if __name__ == "__main__":  # only when run as the worker: importing this module patches nothing
    install()
    app.worker_main(sys.argv[1:])
