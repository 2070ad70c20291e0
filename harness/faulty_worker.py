"""A real ``celery -A worker worker`` with faults injected through environment variables.

Test-only. Faults are injected around the engine, in the real worker process, so the test
sees exactly what a user would: real pool children, real acks, real redelivery.
- ``FAULT_STARTED_DIR``: touch a file there when a chunk starts (proof that work is in flight)
- ``FAULT_SLOW_SECONDS``: sleep this long inside every chunk
- ``FAULT_SLOW_LOAD_SECONDS``: sleep this long before the pool child loads the model (a
  first start that downloads it), touching ``loading-<pid>`` in ``FAULT_STARTED_DIR`` first
- ``FAULT_FAIL_TEXT``: a chunk containing this text raises an ordinary error (not a device
  fault: it is retried), always
- ``FAULT_DEVICE_ERROR``: every forward after the model is ready raises the error a real card
  gives after a device fault (``torch.AcceleratorError``, an illegal memory access), touching
  ``devfault-<pid>-<ns>`` in ``FAULT_STARTED_DIR`` first
- ``FAULT_DEVICE_STICKS``: with ``FAULT_DEVICE_ERROR``, the GPU stays lost after its first
  fault (as a card that fell off the bus): a later model load in this worker fails
- ``FAULT_DEVICE_TEXT``: a forward of a chunk containing this text raises that error, always
- ``FAULT_NAN_EVERY``: on the device path (the engine's forward, not the fp32 reference), the
  logits of every row whose token count is a multiple of this number become NaN
- ``FAULT_WRONG_ATTENTION``: comma-separated attention paths (``default``, ``math``...) whose
  device logits are shifted by one label, so the self-test at start sees them disagree
- ``FAULT_CAPTURE_FAILS``: on a CPU, graphs are "captured" by a stand-in runner
  (:class:`CpuGraphs`, replays eagerly); the capture of the N-th shape raises
- ``FAULT_OOM_ABOVE``: a forward pass over more rows than this raises torch.OutOfMemoryError
  (``0``: every pass, down to a single comment)
- ``FAULT_KILL_TEXT``: a chunk containing this text SIGKILLs the pool child running it, every
  time (as the kernel's OOM killer would)
- ``FAULT_STUCK_SECONDS``: every chunk hangs this long and the soft time limit cannot stop it
  (as with a call stuck in C code), so only the hard time limit ends it
- ``FAULT_KILL_AFTER_STORE``: a folder; the first chunk whose stored labels complete its file
  SIGKILLs its process right after the store, before the assembly is queued, touching
  ``killed-after-store`` there first (once: the file's presence disarms the fault)
- ``FAULT_PAUSE_ASSEMBLY``: a folder; the first assembly done in a chunk task (the worker
  serves the results queue) waits, after touching ``assembly-paused`` there, until the test
  creates ``assembly-go`` there (once: ``assembly-paused`` disarms it)
- ``FAULT_KILL_BEFORE_FINISH``: a folder; the first time an assembly has renamed its output
  into place and is about to mark the job done, its process is SIGKILLed, touching
  ``killed-before-finish`` there first (once)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from celery.exceptions import SoftTimeLimitExceeded

import worker.completion
import worker.engine
from emotions.jobs import JobStore, Stored
from worker.celery import app
from worker.chunk import ASSEMBLE
from worker.graphs import capture_all
from worker.inference import ChunkStats, Engine
from worker.model import ModelHolder

_store_part = JobStore.store_part_read
_finish = JobStore.finish
_assemble_here = worker.completion.assemble
_submit = Engine.submit
_logits = Engine.logits
_build_engine = worker.engine.build_engine
_run = Engine._run
_warm_up = ModelHolder.warm_up
_load = ModelHolder.load
_armed = True  # faults strike real chunks, not the warm-up batch of the model load


def load(self: ModelHolder) -> None:
    started = os.environ.get("FAULT_STARTED_DIR")
    if os.environ.get("FAULT_DEVICE_STICKS") and started and Path(started, "gpu-lost").exists():
        raise RuntimeError("CUDA error: unknown error (injected: the GPU is lost)")
    if slow := float(os.environ.get("FAULT_SLOW_LOAD_SECONDS", "0")):
        if started := os.environ.get("FAULT_STARTED_DIR"):
            Path(started, f"loading-{os.getpid()}").touch()
        time.sleep(slow)
    _load(self)


def warm_up(self: ModelHolder) -> None:
    global _armed
    _armed = False
    try:
        _warm_up(self)
    finally:
        _armed = True


def submit(self: Engine, texts: Any, ahead: Any = None) -> Any:
    if not _armed:
        return _submit(self, texts, ahead)
    if started := os.environ.get("FAULT_STARTED_DIR"):
        Path(started, f"{os.getpid()}-{time.monotonic_ns()}").touch()
    if (fail := os.environ.get("FAULT_FAIL_TEXT")) and any(fail in t for t in texts):
        raise RuntimeError("injected failure of this chunk")
    if (poison := os.environ.get("FAULT_DEVICE_TEXT")) and any(poison in t for t in texts):
        raise device_fault()
    if (kill := os.environ.get("FAULT_KILL_TEXT")) and any(kill in t for t in texts):
        os.kill(os.getpid(), signal.SIGKILL)
    if stuck := float(os.environ.get("FAULT_STUCK_SECONDS", "0")):
        deadline = time.monotonic() + stuck
        while time.monotonic() < deadline:
            # C code does not see the soft limit's exception either.
            with contextlib.suppress(SoftTimeLimitExceeded):
                time.sleep(max(0.0, deadline - time.monotonic()))
    time.sleep(float(os.environ.get("FAULT_SLOW_SECONDS", "0")))
    return _submit(self, texts, ahead)


def device_fault() -> Exception:
    """What a real card raises after an illegal memory access (torch >= 2.8; a RuntimeError
    with the same text before)."""
    kind = getattr(torch, "AcceleratorError", RuntimeError)
    return kind(
        "CUDA error: an illegal memory access was encountered\n"
        "CUDA kernel errors might be asynchronously reported at some other API call, so the "
        "stacktrace below might be incorrect."
    )


def run(self: Engine, part: list[list[int]], width: int, stats: ChunkStats) -> torch.Tensor:
    if _armed and os.environ.get("FAULT_DEVICE_ERROR"):
        if started := os.environ.get("FAULT_STARTED_DIR"):
            Path(started, f"devfault-{os.getpid()}-{time.monotonic_ns()}").touch()
            if os.environ.get("FAULT_DEVICE_STICKS"):
                Path(started, "gpu-lost").touch()
        raise device_fault()
    above = os.environ.get("FAULT_OOM_ABOVE")
    if _armed and above is not None and len(part) > int(above):
        if started := os.environ.get("FAULT_STARTED_DIR"):
            Path(started, f"oom-{len(part)}-{time.monotonic_ns()}").touch()
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    return _run(self, part, width, stats)


def logits(self: Engine, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    out = _logits(self, ids, lengths)
    wrong = os.environ.get("FAULT_WRONG_ATTENTION")
    if wrong and self.about.get("attention", "default") in wrong.split(","):
        out = out.roll(1, dims=-1)
    if _armed and (every := int(os.environ.get("FAULT_NAN_EVERY", "0"))):
        out = out.clone()
        out[lengths % every == 0] = float("nan")
    return out


class CpuGraphs:
    """A stand-in for :class:`worker.graphs.CudaGraphs` on a CPU: the same all-or-nothing
    capture (:func:`worker.graphs.capture_all`), replays run the eager step."""

    def __init__(self, engine: Engine, wanted: dict[int, int]) -> None:
        self.engine, self.wanted = engine, dict(wanted)
        self.shapes: dict[int, int] = {}
        self.device = engine.device
        self.failure: str | None = None

    def capture(self) -> None:
        fail_at = int(os.environ.get("FAULT_CAPTURE_FAILS", "0"))
        count = itertools.count(1)

        def capture_one(rows: int, width: int) -> int:
            if next(count) == fail_at:
                raise RuntimeError("operation not permitted when stream is capturing (injected)")
            return rows

        captured, self.failure = capture_all(self.wanted, capture_one)
        if self.failure is None:
            self.shapes = captured

    def run(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        return self.engine.step(torch.from_numpy(ids), torch.from_numpy(lengths))

    def drop(self) -> None:
        self.shapes.clear()


def store_part(self: JobStore, *args: Any, **kwargs: Any) -> Stored:
    outcome = _store_part(self, *args, **kwargs)
    if (folder := os.environ.get("FAULT_KILL_AFTER_STORE")) and outcome.outcome == ASSEMBLE:
        mark = Path(folder, "killed-after-store")
        if not mark.exists():
            mark.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return outcome


def assemble_here(*args: Any, **kwargs: Any) -> str:
    if folder := os.environ.get("FAULT_PAUSE_ASSEMBLY"):
        paused = Path(folder, "assembly-paused")
        if not paused.exists():
            paused.touch()
            deadline = time.monotonic() + 300
            while not Path(folder, "assembly-go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    return _assemble_here(*args, **kwargs)


def finish(self: JobStore, *args: Any, **kwargs: Any) -> bool:
    if folder := os.environ.get("FAULT_KILL_BEFORE_FINISH"):
        mark = Path(folder, "killed-before-finish")
        if not mark.exists():
            mark.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return _finish(self, *args, **kwargs)


def build_engine(*args: Any, **kwargs: Any) -> Engine:
    if os.environ.get("FAULT_CAPTURE_FAILS"):
        kwargs["graphs"] = CpuGraphs
    return _build_engine(*args, **kwargs)


Engine.logits = logits  # type: ignore[method-assign]
worker.engine.build_engine = build_engine
Engine.submit = submit  # type: ignore[method-assign]
JobStore.store_part_read = store_part  # type: ignore[method-assign]
JobStore.finish = finish  # type: ignore[method-assign]
worker.completion.assemble = assemble_here
Engine._run = run  # type: ignore[method-assign]
ModelHolder.warm_up = warm_up  # type: ignore[method-assign]
ModelHolder.load = load  # type: ignore[method-assign]

if __name__ == "__main__":
    # As app.worker_main does, but standalone: click then exits with the worker's status
    # (worker_main drops it).
    from celery.bin.celery import celery

    celery.params[0].default = app
    celery.main(args=sys.argv[1:], prog_name="celery")
