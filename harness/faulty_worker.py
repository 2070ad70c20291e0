"""A real ``celery -A worker worker`` with faults injected through environment variables.

Test-only. Faults are injected around the engine, in the real worker process, so the test
sees exactly what a user would: real pool children, real acks, real redelivery.
- ``FAULT_STARTED_DIR``: touch a file there when a chunk starts (proof that work is in flight)
- ``FAULT_SLOW_SECONDS``: sleep this long inside every chunk
- ``FAULT_SLOW_LOAD_SECONDS``: sleep this long before the pool child loads the model (a
  first start that downloads it), touching ``loading-<pid>`` in ``FAULT_STARTED_DIR`` first
- ``FAULT_FAIL_TEXT``: a chunk containing this text raises a CUDA-like RuntimeError, always
- ``FAULT_OOM_ABOVE``: a forward pass over more rows than this raises torch.OutOfMemoryError
  (``0``: every pass, down to a single comment)
- ``FAULT_KILL_TEXT``: a chunk containing this text SIGKILLs the pool child running it, every
  time (as the kernel's OOM killer would)
- ``FAULT_STUCK_SECONDS``: every chunk hangs this long and the soft time limit cannot stop it
  (as with a call stuck in C code), so only the hard time limit ends it
- ``FAULT_KILL_AFTER_STORE``: a folder; the first chunk whose stored labels complete its file
  SIGKILLs its process right after the store, before the assembly is queued, touching
  ``killed-after-store`` there first (once: the file's presence disarms the fault)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from celery.exceptions import SoftTimeLimitExceeded

from emotions.jobs import JobStore
from worker.celery import app
from worker.chunk import ASSEMBLE
from worker.inference import ChunkStats, Engine
from worker.model import ModelHolder

_store_part = JobStore.store_part
_submit = Engine.submit
_run = Engine._run
_warm_up = ModelHolder.warm_up
_load = ModelHolder.load
_armed = True  # faults strike real chunks, not the warm-up batch of the model load


def load(self: ModelHolder) -> None:
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
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
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


def run(self: Engine, part: list[list[int]], width: int, stats: ChunkStats) -> torch.Tensor:
    above = os.environ.get("FAULT_OOM_ABOVE")
    if _armed and above is not None and len(part) > int(above):
        if started := os.environ.get("FAULT_STARTED_DIR"):
            Path(started, f"oom-{len(part)}-{time.monotonic_ns()}").touch()
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    return _run(self, part, width, stats)


def store_part(self: JobStore, *args: Any, **kwargs: Any) -> int:
    outcome = _store_part(self, *args, **kwargs)
    if (folder := os.environ.get("FAULT_KILL_AFTER_STORE")) and outcome == ASSEMBLE:
        mark = Path(folder, "killed-after-store")
        if not mark.exists():
            mark.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return outcome


Engine.submit = submit  # type: ignore[method-assign]
JobStore.store_part = store_part  # type: ignore[method-assign]
Engine._run = run  # type: ignore[method-assign]
ModelHolder.warm_up = warm_up  # type: ignore[method-assign]
ModelHolder.load = load  # type: ignore[method-assign]

if __name__ == "__main__":
    app.worker_main(sys.argv[1:])
