"""A simulated GPU, so that the worker's GPU behaviour can be measured on any machine.

Everything this module reports is MODELLED, not measured on a GPU. What is real: every line of
the engine runs (tokenizer, planner, padding, mask, the one fetch per chunk), and each forward
spends the real host cost of an eager forward, by running a real 12-layer model of hidden size
16 (the op count of the real model; a few rows and columns of the batch, so the host does no
real arithmetic). What is modelled: the GPU. Each forward or graph replay queues its modelled
GPU time on a stream; the stream is a virtual clock (a forward starts when the host queued it
and the previous one ended, and cannot end before the host finished launching it), and a host
that waits for a result sleeps until the clock reaches it, holding no GIL. (The same semantics
as a thread that sleeps each item's duration, without that thread's wake-up jitter adding up.)

Calibration, all BERT-base fp16, model FLOPs from :func:`bench.contenders.model_flops`:

- NVIDIA's TensorRT BERT demo (github.com/NVIDIA/TensorRT, demo/BERT/README.md, "Inference
  performance", BERT Base, FP16 average latency): A100-40GB, sequence 128: batch 1 0.67 ms,
  batch 16 2.18 ms, batch 128 16.14 ms; T4: 1.95, 17.90 and 144.20 ms. A line through batch
  16 and 128 gives the rate and fixed cost (A100: 179 TFLOP/s, 0.19 ms; it predicts the
  published 384 x 128 within 2%); batch 1 gives the floor of a tiny forward.
- Eager PyTorch runs unfused kernels: 1.78x TensorRT-class time on the same GPU (AITemplate,
  github.com/facebookincubator/AITemplate, examples/03_bert/README.md, A100-40GB, sequence 128,
  batch 256: PyTorch eager 56.34 ms, AITemplate 31.57 ms; batch 16: AIT 2.21 ms vs TensorRT's
  2.18 ms). A CUDA graph replays the same kernels: same GPU time, one launch.
- H100 SXM = A100 / 2.0: the low end of "two to three times the throughput of A100" with
  TensorRT (Baseten, "Unlocking the full power of NVIDIA H100 GPUs for ML inference with
  TensorRT"); data-sheet fp16 dense 989.5 vs 312 TFLOP/s, memory 3.35 vs 1.56 TB/s.
- For comparison only (not used): an eager transformers BERT forward costs 5.3-6.0 ms of host
  time on an A100 machine at batch 1-4, sequence 128-256, SDPA (transformers PR #28802,
  gist hackyon/c3d829d06144b98c6b092a66733fa1a9); the simulator spends whatever the host it
  runs on spends.
- A graph replay's host cost (copies in, launch, output copy) is modelled at 30 us.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.contenders import model_flops
from worker.device import SyncCounter

EAGER_OVER_FUSED = 56.34 / 31.57  # AITemplate README, A100, seq 128, batch 256
H100_OVER_A100 = 2.0  # Baseten: 2-3x with TensorRT; the low end
GRAPH_LAUNCH_S = 30e-6  # host cost of one replay: two async copies, the launch, one clone
PROXY_ROWS, PROXY_WIDTH = 2, 8  # the slice of each batch the host-cost model really runs
LAYERS, HIDDEN = 12, 768  # the real model's shape, for FLOPs


@dataclass(frozen=True)
class Profile:
    """A modelled GPU: time of one forward = max(floor, fixed + FLOPs / rate)."""

    name: str
    rate: float  # FLOP/s the eager fp16 forward's kernels reach on large batches
    fixed_s: float
    floor_s: float

    def forward_seconds(self, rows: int, width: int) -> float:
        if self.rate <= 0:
            return 0.0
        work = self.fixed_s + model_flops([(rows, width)], LAYERS, HIDDEN) / self.rate
        return max(self.floor_s, work)


def _fit(batch1_ms: float, batch16_ms: float, batch128_ms: float, name: str) -> Profile:
    """An eager profile from TensorRT's sequence-128 latencies of one GPU."""
    small, large = (model_flops([(b, 128)], LAYERS, HIDDEN) for b in (16, 128))
    rate = (large - small) / ((batch128_ms - batch16_ms) / 1e3)
    fixed = max(0.0, batch16_ms / 1e3 - small / rate)
    return Profile(
        name, rate / EAGER_OVER_FUSED, fixed * EAGER_OVER_FUSED, batch1_ms / 1e3 * EAGER_OVER_FUSED
    )


_A100 = _fit(0.67, 2.18, 16.14, "a100")
PROFILES: dict[str, Profile] = {
    "h100": Profile(
        "h100",
        _A100.rate * H100_OVER_A100,
        _A100.fixed_s / H100_OVER_A100,
        _A100.floor_s / H100_OVER_A100,
    ),
    "a100": _A100,
    "t4": _fit(1.95, 17.90, 144.20, "t4"),
    "null": Profile("null", 0.0, 0.0, 0.0),  # no GPU time, no forward: the pipeline's ceiling
}


class SimDevice:
    """The modelled GPU's stream and its counters (thread-safe)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.busy_s = 0.0  # modelled GPU seconds queued so far
        self.forwards = 0
        self.syncs = 0  # times the host waited for the stream
        self._end = 0.0  # perf_counter time at which the last queued work ends
        self._lock = threading.Lock()

    def launch(self, rows: int, width: int, host_start: float) -> None:
        """Queue one forward whose launch began at ``host_start`` and ends now."""
        seconds = self.profile.forward_seconds(rows, width)
        now = time.perf_counter()
        with self._lock:
            start = max(host_start, self._end)
            self._end = max(start + seconds, now)
            self.busy_s += seconds
            self.forwards += 1

    def synchronize(self) -> None:
        """Wait (sleeping, no GIL held) until everything queued so far has run."""
        with self._lock:
            end = self._end
        self._wait_until(end)

    def _wait_until(self, end: float) -> None:
        with self._lock:
            self.syncs += 1
        delay = end - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    def fetch(self, top1: torch.Tensor) -> Callable[[], np.ndarray]:
        """The engine's fetch: a copy queued now, behind the work queued so far; the call it
        returns waits until the stream reaches it (not for work queued after it)."""
        with self._lock:
            end = self._end

        def wait() -> np.ndarray:
            self._wait_until(end)
            return top1.numpy()

        return wait


class BagLogits:
    """Cheap stand-in labels: a fixed random score table over each row's first content token.

    Deterministic per comment, so outputs can be compared between runs and paths; they are not
    the model's labels (the CPU benchmark and the tests check those).
    """

    def __init__(self, vocab: int, labels: int) -> None:
        self.table = torch.randn(vocab, labels, generator=torch.Generator().manual_seed(7))

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        column = 1 if ids.shape[1] > 1 else 0
        return self.table[ids[:, column].clamp(0, len(self.table) - 1)]


class SimForward:
    """The engine's forward on the simulated GPU: real host cost, modelled device time.

    A mask format that makes the real forward read a device value (counted once per format
    with :class:`~worker.device.SyncCounter`) makes the host wait for the stream first, as a
    GPU host would.
    """

    def __init__(self, proxy: Any, device: SimDevice, logits: BagLogits) -> None:
        self.proxy, self.device, self.logits = proxy, device, logits
        self._syncs: dict[int, int] = {}  # mask ndim -> syncs per forward

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        start = time.perf_counter()
        if self.proxy is not None:
            syncs = self._syncs.get(mask.dim())
            if syncs is None:
                syncs = self._syncs[mask.dim()] = self._count(ids, mask)
            for _ in range(syncs):
                self.device.synchronize()
            self.proxy(
                input_ids=ids[:PROXY_ROWS, :PROXY_WIDTH],
                attention_mask=mask[:PROXY_ROWS][..., :PROXY_WIDTH],
            )
        self.device.launch(ids.shape[0], ids.shape[1], start)
        return self.logits(ids)

    def _count(self, ids: torch.Tensor, mask: torch.Tensor) -> int:
        with SyncCounter() as counter:
            self.proxy(
                input_ids=ids[:PROXY_ROWS, :PROXY_WIDTH],
                attention_mask=mask[:PROXY_ROWS][..., :PROXY_WIDTH],
            )
        return counter.total


class SimGraphs:
    """The CUDA-graph runner on the simulated GPU: modelled launch and GPU time per replay."""

    def __init__(self, engine: Any, wanted: dict[int, int], device: SimDevice) -> None:
        self.engine, self.wanted, self.sim = engine, dict(wanted), device
        self.shapes: dict[int, int] = {}
        self.device = torch.device("cpu")

    def capture(self) -> None:
        self.shapes = dict(self.wanted)

    def run(self, ids: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        start = time.perf_counter()
        tensor = torch.from_numpy(ids).clone()  # stands for the pinned copy of the inputs
        while time.perf_counter() - start < GRAPH_LAUNCH_S:
            pass  # the launch itself, holding the GIL like the real call
        self.sim.launch(ids.shape[0], ids.shape[1], start)
        logits = self.engine.forward.logits(tensor)
        return torch.argmax(logits, dim=-1)

    def drop(self) -> None:
        self.shapes.clear()
