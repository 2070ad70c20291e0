"""The worker says how it runs: one start-up line, and the same facts in its stats.

What decides speed and correctness on a GPU (its name, the dtype, attention kernel, mask
format, CUDA graphs and why they are on or off, batch settings, the tokenizer's path, the
self-test's agreement with fp32) is chosen at start, some of it by checks that may step down.
:func:`announce` logs it once, and keeps it where the main process can read it: a shared buffer
created before the pool forks, as the model is loaded in a pool child. :class:`RunsOn` adds it
to the worker's stats under ``emotions``, which ``celery inspect stats`` and Flower's worker
page show.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from typing import TYPE_CHECKING, Any

from celery import bootsteps

if TYPE_CHECKING:
    from worker.inference import Engine

log = logging.getLogger(__name__)

ABOUT_BYTES = 4096  # room for the description, as JSON
_about: Any = multiprocessing.Array("c", ABOUT_BYTES)  # shared with pool children (pre-fork)


def startup_line(about: dict[str, Any]) -> str:
    """The facts, ``key=value``, in a fixed order (unknown keys last)."""
    first = (
        "device",
        "gpu",
        "dtype",
        "attention",
        "mask",
        "graphs",
        "batch_size",
        "token_budget",
        "max_length",
        "tokenizer",
        "tokenizer_threads",
        "self_test",
        "path_chosen_because",
    )
    keys = [k for k in first if k in about] + sorted(k for k in about if k not in first)
    return ", ".join(f"{k}={about[k]}" for k in keys)


def announce(engine: Engine) -> None:
    """Log how ``engine`` runs, and publish it to this worker's stats."""
    log.info("worker runs on: %s", startup_line(engine.about))
    publish(engine.about)


def publish(about: dict[str, Any]) -> None:
    """Keep ``about`` for :func:`published` (cut to fit the shared buffer)."""
    data = json.dumps(about, ensure_ascii=False, default=str).encode()
    if len(data) >= ABOUT_BYTES:
        data = json.dumps({"summary": startup_line(about)[: ABOUT_BYTES // 2]}).encode()
    _about.value = data


def published() -> dict[str, Any]:
    """What :func:`publish` kept, in any process of this worker ({} before the model is ready)."""
    raw = _about.value
    return json.loads(raw.decode()) if raw else {}


class RunsOn(bootsteps.StartStopStep):
    """Adds ``emotions``: how the model runs, to the worker's stats (``inspect stats``). A
    start-stop step because only those are kept in the worker's steps, whose ``info`` the stats
    gather."""

    def info(self, obj: Any) -> dict[str, Any]:
        return {"emotions": published()}
