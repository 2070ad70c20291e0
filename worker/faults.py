"""A GPU that breaks stops its own worker, never the files.

On a real card a CUDA error other than out-of-memory (an illegal memory access, a device-side
assert, a cuBLAS or cuDNN execution failure) sticks to the process: its CUDA context is
unusable and every later call fails. Retrying the chunk in that process would fail it, and
every chunk after it, faster than healthy workers finish theirs, until files fail for a
fault of one card. So such an error is fatal to the process that met it:

- the chunk goes back to its queue without using up a retry: a prefork pool child exits, and
  Celery requeues the chunk of a lost child (``task_reject_on_worker_lost``); a worker whose
  tasks run in its own process (``-P threads``/``solo``) first pushes every unacknowledged
  message (the chunk in hand and the ones it reserved) back onto its queue, then exits;
- the line that says so is CRITICAL and names the GPU and the error;
- a prefork worker starts a fresh child, which creates a new CUDA context and loads the model
  again (a failed load stops the worker with status 1); if its GPU then faults on a second,
  different chunk before any chunk finished, the card is taken as broken and the worker stops
  with status 1 too (:data:`~emotions.constants.DEVICE_FAULT_CHUNKS`).

The start of the chunk was counted when it began (:mod:`worker.chunk`), so a chunk that
breaks every worker it meets still fails its file once its start limit is reached, with a
report naming it, while a worker meeting it again and again on the same chunk is not taken
as broken.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import zlib
from typing import NoReturn

from emotions.constants import DEVICE_FAULT_CHUNKS, DEVICE_FAULT_EXIT
from emotions.errors import DeviceFaultError
from worker.shutdown import exit_now

log = logging.getLogger(__name__)

# What CUDA, cuBLAS and cuDNN say in the RuntimeErrors of a torch without AcceleratorError
# (and of libraries that re-raise): all of them mean the device itself failed.
DEVICE_FAULT_MESSAGES = (
    "CUDA error",
    "CUDA driver error",
    "CUBLAS_STATUS_",
    "CUDNN_STATUS_",
    "cuDNN error",
    "device-side assert",
    "illegal memory access",
    "unspecified launch failure",
    "uncorrectable ECC error",
)

# Shared by the pool children of one worker (created before the fork): the last chunk whose
# forward faulted with no chunk finished since (0: none), and how many different ones did.
_last_fault = multiprocessing.Value("q", 0)
_faulted_chunks = multiprocessing.Value("i", 0)


def device_fault_types() -> tuple[type[BaseException], ...]:
    """The exception classes of device faults that this torch has (read at call time:
    ``torch.AcceleratorError`` is new in torch 2.8). Imports torch: the app itself does not."""
    import torch

    found = {getattr(torch, "AcceleratorError", None), getattr(torch.cuda, "CudaError", None)}
    return tuple(t for t in found if isinstance(t, type) and issubclass(t, BaseException))


def is_device_fault(error: BaseException) -> bool:
    """True for a device error that is not out-of-memory (which is retried on smaller batches)."""
    from worker.device import is_oom

    if is_oom(error):
        return False
    if isinstance(error, device_fault_types()):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in DEVICE_FAULT_MESSAGES)


def as_device_fault(error: BaseException, gpu: str) -> DeviceFaultError | None:
    """The error to raise for ``error`` met on ``gpu`` if it is a device fault, else None."""
    if not is_device_fault(error):
        return None
    return DeviceFaultError(f"{gpu} failed: {type(error).__name__}: {error}")


def _chunk_key(job: str, index: int) -> int:
    return zlib.crc32(f"{job}:{index}".encode()) + 1  # never 0, which means "none"


def record_fault(job: str, index: int) -> int:
    """Count a device fault on chunk ``index`` of ``job``; how many different chunks faulted in
    a row in this worker (a fault on the chunk that faulted last does not count again)."""
    key = _chunk_key(job, index)
    with _last_fault.get_lock():
        if _last_fault.value != key:
            _faulted_chunks.value += 1
            _last_fault.value = key
        return int(_faulted_chunks.value)


def chunk_finished() -> None:
    """A chunk finished: the faults before it were the chunk's, not a broken card's."""
    if _last_fault.value:
        with _last_fault.get_lock():
            _last_fault.value = 0
            _faulted_chunks.value = 0


def stop_for_device_fault(error: DeviceFaultError, *, job: str, index: int, name: str) -> NoReturn:
    """Hand the chunk back and leave this process (see the module's description)."""
    from worker import lifecycle

    faulted = record_fault(job, index)
    log.critical(
        "file=%s chunk=%d %s; this process stops and the chunk goes back to its queue "
        "(a CUDA error other than out-of-memory leaves the process's GPU context unusable)",
        name,
        index,
        error,
    )
    if lifecycle.in_pool_child():
        if faulted >= DEVICE_FAULT_CHUNKS:
            log.critical(
                "the GPU faulted on %d different chunks in a row: it is broken, the worker "
                "stops with status 1",
                faulted,
            )
            lifecycle.stop_worker_from_child()
        else:
            log.error("pool child %d exits; a fresh one reloads the model", os.getpid())
    else:
        lifecycle.hand_back_unacked()
    exit_now(DEVICE_FAULT_EXIT)
