"""Intra-op threads of a forward on the CPU, chosen by the size of the forward.

torch runs each op of a CPU forward on all its intra-op threads (one per core by default).
For a few short comments through a small model each op lasts microseconds: the threads spend
more CPU waking up, synchronising and spinning than the op itself, CPU that a worker sharing
its host with the producer and Redis takes from them. So a forward whose work is below
:data:`~emotions.constants.CPU_SERIAL_FORWARD_WORK` runs on one thread, and a larger one on
the threads the process had. A GPU forward is never wrapped: its ops run on the device.
"""

from __future__ import annotations

from typing import Any

import torch

from emotions.constants import CPU_SERIAL_FORWARD_WORK
from worker.device import Forward

# Used when a model's config does not say (the published model's shape): work is then
# over-estimated for smaller models, which only means they keep their threads.
DEFAULT_HIDDEN = 768
DEFAULT_LAYERS = 12


def work_per_token(config: Any) -> int:
    """A forward's work per token for a model of this config: hidden size squared, by layers."""
    hidden = getattr(config, "hidden_size", None) or DEFAULT_HIDDEN
    layers = getattr(config, "num_hidden_layers", None) or DEFAULT_LAYERS
    return int(hidden) * int(hidden) * int(layers)


def sized_threads(forward: Forward, per_token: int, threads: int | None = None) -> Forward:
    """``forward`` run on one intra-op thread when its input is small, else on ``threads``
    (default: the process's intra-op threads now).

    The count is restored after every small forward, whatever it raised, to the number read
    here, not to whatever another thread set in between: with a threads pool, two forwards may
    overlap.
    """
    usual = threads if threads is not None else torch.get_num_threads()
    if usual <= 1:
        return forward

    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if inputs["input_ids"].numel() * per_token >= CPU_SERIAL_FORWARD_WORK:
            return forward(inputs)
        torch.set_num_threads(1)
        try:
            return forward(inputs)
        finally:
            torch.set_num_threads(usual)

    return run
