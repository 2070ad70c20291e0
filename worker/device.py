"""What the CUDA path needs to know about the libraries under it, checked rather than assumed.

- Which keyword sets the dtype in ``from_pretrained`` (renamed in transformers 4.56).
- Which attention-mask format runs the model without a host-device synchronisation: a 2D mask
  makes transformers' SDPA path ask ``padding_mask.all()`` as a Python bool on every forward,
  which waits for the GPU; a prepared mask is passed through untouched. The format is chosen by
  :func:`choose_mask_format`, which runs the model once and counts (:class:`SyncCounter`).
- What an out-of-memory error looks like in every torch the package allows.
- How many threads the tokenizer may use, so several workers on one host share its cores.
- The chunk's one synchronisation: copying its labels to the host (:func:`fetch_to_host`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from emotions.constants import TOKENIZER_THREADS_MAX

log = logging.getLogger(__name__)

MaskFormat = Literal["4d", "3d", "2d"]
Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]
# aten ops that read a device value on the host (or size a result by one): each waits for the
# GPU. ``is_nonzero`` is ``bool(tensor)``, ``_local_scalar_dense`` is ``.item()``/``int()``.
SYNC_OPS = frozenset(
    {
        "is_nonzero",
        "_local_scalar_dense",
        "item",
        "equal",
        "nonzero",
        "masked_select",
        "unique",
        "_unique2",
    }
)
# cuBLAS/cuDNN report a failed workspace allocation as a RuntimeError, not an OutOfMemoryError.
OOM_MESSAGES = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")
PROC_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU of the host (the driver's)
DTYPE_KEYWORD_SINCE = (4, 56)  # transformers renamed torch_dtype to dtype (PR #39782)


def dtype_keyword(transformers_version: str) -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` from 4.56, ``torch_dtype`` before.

    Older versions pass an unknown ``dtype=`` on to the model's constructor, which raises
    ``TypeError``; newer ones still accept ``torch_dtype`` but may drop it.
    """
    parts = []
    for piece in transformers_version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return "dtype" if tuple(parts) >= DTYPE_KEYWORD_SINCE else "torch_dtype"


def oom_types() -> tuple[type[BaseException], ...]:
    """The out-of-memory exception classes this torch has (read at call time: ``torch.
    OutOfMemoryError`` is missing from some versions the package allows)."""
    found = {getattr(module, "OutOfMemoryError", None) for module in (torch, torch.cuda)}
    return tuple(t for t in found if isinstance(t, type) and issubclass(t, BaseException))


def is_oom(error: BaseException) -> bool:
    """True for a device out-of-memory, whichever way this torch and CUDA library report it."""
    if isinstance(error, oom_types()):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in OOM_MESSAGES)


class SyncCounter(TorchDispatchMode):
    """Counts the aten ops that make the host wait for the device, by name.

    On a CPU they cost nothing, but they are dispatched all the same: counting them on a CPU
    shows what would stall a GPU. Adds Python overhead to every op: for probes and tests only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def attention_mask(lengths: torch.Tensor, width: int, fmt: MaskFormat) -> torch.Tensor:
    """The padding mask of rows of ``lengths`` tokens, built on their device (no host copy).

    ``4d`` is the boolean ``(rows, 1, 1, width)`` mask that transformers' mask utilities pass
    through as prepared; ``3d`` the ``(rows, 1, width)`` one that older versions extend
    themselves; ``2d`` the tokenizer's own format (which costs a synchronisation under SDPA).
    """
    keep = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
    if fmt == "4d":
        return keep[:, None, None, :]
    if fmt == "3d":
        return keep[:, None, :]
    return keep.long()


def choose_mask_format(
    forward: Forward, device: torch.device, pad_id: int, token_id: int
) -> MaskFormat:
    """The first mask format that this model accepts, with the 2D mask's logits and no sync.

    Runs three tiny forwards. Falls back to ``2d`` (with a warning) when no prepared format
    is accepted: correct, one synchronisation per forward.
    """
    lengths = torch.tensor([5, 3, 1], device=device)
    ids = torch.full((3, 5), pad_id, dtype=torch.long, device=device)
    ids[attention_mask(lengths, 5, "2d").bool()] = token_id
    with torch.inference_mode():
        reference = forward({"input_ids": ids, "attention_mask": attention_mask(lengths, 5, "2d")})
        for fmt in ("4d", "3d"):
            try:
                with SyncCounter() as counter:
                    logits = forward(
                        {"input_ids": ids, "attention_mask": attention_mask(lengths, 5, fmt)}
                    )
            except (ValueError, RuntimeError, TypeError, IndexError) as e:
                log.debug("mask format %s refused: %s", fmt, e)
                continue
            tolerance = 1e-2 if logits.dtype in (torch.float16, torch.bfloat16) else 1e-4
            same = torch.allclose(logits.float(), reference.float(), atol=tolerance, rtol=0)
            if same and counter.total == 0:
                return fmt
            log.debug("mask format %s: same logits %s, %d syncs", fmt, same, counter.total)
    log.warning(
        "no prepared attention mask works with this model and transformers version: "
        "every forward pass will wait for the GPU once (2D mask)"
    )
    return "2d"


def fetch_to_host(top1: torch.Tensor) -> Callable[[], np.ndarray]:
    """Start copying a chunk's labels to the host; the call it returns waits for them (the
    chunk's one host-device synchronisation).

    On CUDA the copy goes to pinned memory and is queued now, right behind this chunk's
    forwards, with an event after it: the wait covers this chunk's work only, not the work
    queued after it (the next chunk, queued ahead, or another thread's).
    """
    if top1.device.type != "cuda":
        return top1.numpy
    host = torch.empty(top1.shape, dtype=top1.dtype, pin_memory=True)
    host.copy_(top1, non_blocking=True)
    done = torch.cuda.Event(blocking=True)  # the default busy-waits a core in synchronize()
    done.record(torch.cuda.current_stream(top1.device))  # the labels' device, not device 0

    def wait() -> np.ndarray:
        done.synchronize()
        return host.numpy()

    return wait


def tokenizer_threads(setting: int, device: str, gpus: int | None = None) -> int:
    """Threads for the tokenizer: the setting, or (0) this worker's share of the host's cores.

    The share is the usable cores divided by the GPUs on the host (one worker per GPU; ``gpus``
    defaults to :func:`host_gpus`), capped at :data:`TOKENIZER_THREADS_MAX`: tokenizing a
    chunk does not scale further.
    """
    if setting > 0:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if gpus is None:
        gpus = host_gpus() if device.startswith("cuda") else 1
    return max(1, min(TOKENIZER_THREADS_MAX, (cores or 1) // max(1, gpus)))


def host_gpus(proc_gpus: Path = PROC_GPUS) -> int:
    """The NVIDIA GPUs of the whole host (0 if none are found), whatever this process sees.

    A deployment pins each worker to its GPU with ``CUDA_VISIBLE_DEVICES``, under which
    ``torch.cuda.device_count()`` is 1 in every worker; NVML, and the driver's entries under
    ``/proc/driver/nvidia/gpus`` (one folder per GPU), count them all.
    """
    try:
        count = torch.cuda._raw_device_count_nvml()  # NVML ignores CUDA_VISIBLE_DEVICES
    except (OSError, AttributeError):  # no libnvidia-ml on this host, or an older torch
        count = -1
    if count > 0:
        return int(count)
    try:
        return sum(1 for entry in proc_gpus.iterdir() if entry.is_dir())
    except OSError:
        return 0


def limit_tokenizer_threads(threads: int) -> None:
    """Make the Rust tokenizer use at most ``threads`` threads in this process.

    Must run before the process's first parallel tokenization: the thread pool (rayon's) reads
    ``RAYON_NUM_THREADS`` once, when it starts. One thread turns parallelism off altogether.
    """
    if threads <= 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        os.environ.pop("RAYON_NUM_THREADS", None)
    else:
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        os.environ["RAYON_NUM_THREADS"] = str(threads)
