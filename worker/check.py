"""``python -m worker.check``: does this machine's GPU give the right labels, and how fast?

The first person to run the CUDA path on a given card is a user, so this one command shows on
their own machine what the worker will do there: the GPU, driver, torch and transformers
versions, the model and its revision, its labels, the path the worker chose (dtype, attention
kernel, mask format, CUDA graphs) and the self-test's agreement with fp32 on the CPU
(:mod:`worker.selftest`), then the throughput on a synthetic multilingual corpus (20,000
comments by default) timed with CUDA events, the fraction of that time the GPU was busy, the
peak GPU memory, and a verdict. The exit status is 1 when the labels disagree with fp32 on
every path (the worker would refuse to start), 2 when the model or device cannot be used.

It loads the model exactly as a worker does (the same settings, ``EMOTIONS_*`` and the flags
below) and runs the corpus through the worker's own engine, chunk by chunk. On a CPU it runs
too, and says so: CI runs it there with a tiny model and ``--comments``.

"GPU busy" sums, on the GPU's own clock, the time from the start to the end of each batch's
forward on the stream; launch gaps inside an eager forward count as busy, gaps between
batches (tokenizing, planning, waiting for the host) do not.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emotions.constants import CHECK_COMMENTS
from emotions.errors import ConfigurationError, ModelLoadError
from emotions.settings import load_settings

DRIVER_VERSION = Path("/proc/driver/nvidia/version")
# Comment lengths, in words: mostly short, a long tail (lognormal), some walls of text.
LENGTH_MU, LENGTH_SIGMA, WALL_EVERY, WALL_WORDS = 1.8, 1.0, 500, 400


def synthetic_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` comments of heavy-tailed lengths, their words drawn from the self-test's sample
    (every language and script of it, emoji and URLs): a pure function of ``(n, seed)``."""
    from worker.selftest import SAMPLE

    rng = random.Random(seed)
    words = [w for text in SAMPLE for w in text.split()]
    out = []
    for i in range(n):
        count = WALL_WORDS if i % WALL_EVERY == WALL_EVERY - 1 else 1
        count = max(count, round(rng.lognormvariate(LENGTH_MU, LENGTH_SIGMA)))
        out.append(" ".join(rng.choice(words) for _ in range(count)))
    return out


def driver_version(path: Path = DRIVER_VERSION) -> str:
    """The NVIDIA kernel driver's version, as the driver states it ("unknown" without one)."""
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", path.read_text())
    except OSError:
        return "unknown"
    return found.group(1) if found else "unknown"


def environment(device: str, model: str, config: Any) -> dict[str, str]:
    """What this run ran on: device, driver, library versions, model and revision."""
    import torch
    import transformers

    if device.startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(device))
        cuda = f"CUDA {torch.version.cuda}, driver {driver_version()}"
    else:
        gpu, cuda = "none: on a CPU (fp32 checked against itself)", "n/a"
    revision = getattr(config, "_commit_hash", None) or (
        "local folder" if Path(model).is_dir() else "unknown"
    )
    return {
        "gpu": gpu,
        "cuda": cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": model,
        "revision": str(revision),
    }


class Clock:
    """Wall time and GPU busy time of a run: CUDA events on a GPU, ``perf_counter`` on a CPU."""

    def __init__(self, engine: Any) -> None:
        import torch

        self.cuda = engine.device.type == "cuda"
        self.spans: list[tuple[Any, Any]] = []
        self._event: Callable[[], Any] = lambda: torch.cuda.Event(enable_timing=True)
        if self.cuda:
            inner = engine._run

            def run(part: Any, width: int, stats: Any) -> Any:
                start, end = self._event(), self._event()
                start.record()
                out = inner(part, width, stats)
                end.record()
                self.spans.append((start, end))
                return out

            engine._run = run

    def time(self, work: Callable[[], None]) -> tuple[float, float | None]:
        """Seconds ``work`` took, and the fraction of them the GPU was busy (None on a CPU)."""
        import torch

        if not self.cuda:
            begun = time.perf_counter()
            work()
            return time.perf_counter() - begun, None
        first, last = self._event(), self._event()
        first.record()
        work()
        last.record()
        torch.cuda.synchronize()
        wall_ms = first.elapsed_time(last)
        busy_ms = sum(s.elapsed_time(e) for s, e in self.spans)
        return wall_ms / 1000, min(1.0, busy_ms / max(wall_ms, 1e-9))


def measure(engine: Any, texts: Sequence[str], chunk: int) -> dict[str, str]:
    """Throughput of the engine over ``texts`` in chunks of ``chunk``, as a worker runs them."""
    import torch

    cuda = engine.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(engine.device)
    clock = Clock(engine)

    def work() -> None:
        for start in range(0, len(texts), chunk):
            engine.classify_indices(texts[start : start + chunk])

    seconds, busy = clock.time(work)
    return {
        "comments": f"{len(texts)} synthetic, multilingual (chunks of {chunk})",
        "throughput": f"{len(texts) / max(seconds, 1e-9):.0f} comments/s ({seconds:.1f} s)",
        "gpu busy": "n/a (CPU)" if busy is None else f"{busy:.2f} of the time",
        "peak gpu memory": (
            f"{torch.cuda.max_memory_allocated(engine.device) / 2**20:.0f} MiB" if cuda else "n/a"
        ),
        "non-finite rows": str(engine.totals.nonfinite),
    }


def show(facts: dict[str, Any]) -> None:
    for key, value in facts.items():
        print(f"{key + ':':<22}{value}")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.check", description=__doc__)
    parser.add_argument("--comments", type=int, default=CHECK_COMMENTS, help="corpus size")
    parser.add_argument("--device", help="EMOTIONS_DEVICE (default: cuda)")
    parser.add_argument("--model", help="EMOTIONS_MODEL (hub id or folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; the exit status (0 good, 1 labels disagree, 2 cannot run)."""
    import logging

    from worker.model import ModelHolder
    from worker.selftest import describe_path

    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(device=args.device, model=args.model)
        holder = ModelHolder(settings)
        holder.load()
    except (ConfigurationError, ModelLoadError) as e:
        print(f"VERDICT: cannot run: {e}")
        return 2
    engine = holder.loaded_engine
    show(environment(settings.device, settings.model, holder.model.config))
    show({"labels": ", ".join(engine.labels)})
    try:
        holder.warm_up()
    except ModelLoadError as e:
        show({"self-test": engine.about.get("self_test", "?")})
        print(f"VERDICT: FAIL: {e}")
        return 1
    show(
        {
            "path": describe_path(engine),
            "path chosen because": engine.about["path_chosen_because"],
            "batch": f"{engine.about['batch_size']} rows, {engine.about['token_budget']} tokens",
            "tokenizer": f"{engine.about['tokenizer']}, {engine.about['tokenizer_threads']} "
            "threads",
            "self-test": engine.about["self_test"],
        }
    )
    figures = measure(engine, synthetic_corpus(args.comments, args.seed), settings.chunk_size)
    show(figures)
    where = "on a CPU" if engine.device.type == "cpu" else f"on {engine.gpu_name}"
    print(
        f"VERDICT: OK: labels agree with fp32 ({engine.about['self_test']}); "
        f"{figures['throughput']} {where}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
