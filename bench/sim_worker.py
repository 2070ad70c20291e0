"""``python -m bench.sim_worker worker -c 1 ...``: a real Celery worker on the simulated GPU.

Benchmark-only. Everything is the production worker (``worker.celery.app``, its tasks, its
signals, its pool child, its :class:`~worker.model.ModelHolder`) except how the holder builds
its engine: with ``BENCH_SIMULATE=<profile>`` set, ``load()`` builds the engine on the
simulated GPU (:func:`bench.sim_engine.sim_engine`) instead of loading weights onto a device.
The patch is applied here, in the worker's main process, before the pool forks, so the pool
child inherits it. Figures it produces are MODELLED.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.sim_engine import LOG_ENV, PROXY_ENV, SIMULATE_ENV, ChunkLog, sim_engine
from worker import lifecycle
from worker.celery import app
from worker.model import ModelHolder, State


def load(self: ModelHolder) -> None:
    """Build the engine on the simulated GPU named by ``BENCH_SIMULATE``."""
    engine, device = sim_engine(
        self.settings, os.environ[SIMULATE_ENV], Path(os.environ[PROXY_ENV])
    )
    if log := os.environ.get(LOG_ENV):
        engine.observers.append(ChunkLog(Path(log), device))
    self._engine = engine
    self.state = State.LOADED


def warm_up(self: ModelHolder) -> None:
    """:func:`sim_engine` has warmed the engine up already."""
    self.state = State.READY


if os.environ.get(SIMULATE_ENV):
    ModelHolder.load = load  # type: ignore[method-assign]
    ModelHolder.warm_up = warm_up  # type: ignore[method-assign]
    # Created (not loaded) before any pool starts, so that the tasks of a threads pool share
    # one holder, and with it one engine (a prefork child inherits it, still empty).
    lifecycle.holder()

if __name__ == "__main__":
    app.worker_main(sys.argv[1:])
