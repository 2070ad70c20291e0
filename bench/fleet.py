"""``python -m bench.controlplane --producers N``: several producers beside one Redis.

A fleet runs one producer per input folder (or per shard of one), all on one Redis and one
set of workers. What sizing it needs is whether a producer's cost per comment stays the same
when others share its Redis: so the same file size is measured in one run with a lone
producer (three times before and twice after) and with ``N`` producers on ``N`` folders at
once, each producer's own CPU (from ``wait4``) per comment compared with the lone runs'
median. Redis's CPU per comment while the ``N`` ran is the figure that sets the ceiling of
one Redis.

The inference side is the control plane benchmark's null workers, so nothing but the control
plane is measured; every output is checked (each record once, in order).
"""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from bench.controlplane import (
    US,
    _check,
    _producer,
    _stack,
    control_plane,
    producer_cmd,
    startup_folder,
)
from bench.cpu import Meter, run_measured_together
from bench.inputs import downloader_jsonl
from harness.stack import Stack


def _fill(stack: Stack, name: str, n: int, seed: int) -> tuple[Path, Path]:
    """A folder holding one downloader JSON Lines file of ``n`` comments named after it."""
    folder = stack.root / f"input-{name}"
    folder.mkdir()
    source = folder / f"{name}.jsonl"
    downloader_jsonl(source, n, seed)
    return folder, source


LONE_BEFORE = 3  # lone runs before the N producers ...
LONE_AFTER = 2  # ... and after them: the lone figure is the median of these


def measure_fleet(
    model: Path, n: int, producers: int, workers: int, seed: int, timeout: float = 3600
) -> dict[str, Any]:
    """Lone producers (:data:`LONE_BEFORE`), then ``producers`` at once, then lone ones again
    (:data:`LONE_AFTER`), each on its own folder of ``n`` comments (downloader JSON Lines),
    with ``workers`` null inference workers and one results worker.

    CPU microseconds per comment: ``lone`` (the median of the lone runs, each in ``lones``),
    ``each`` (every one of the ``producers``), and Redis, the results worker and the null
    workers during the ``N`` run; ``rate``: the ``N`` producers' comments over the wall time
    of the slowest. One lone run lasts a few seconds, and on a shared machine one run's
    figure moves by 10% either way from one minute to the next: the median of runs on both
    sides of the ``N`` is a baseline that one slow or fast minute does not set.
    """
    with _stack("fleet-", model) as (stack, server, _):
        meters, startup = control_plane(stack, server, workers)
        lones = [_lone(stack, meters["redis"], k, n, seed, timeout) for k in range(LONE_BEFORE)]

        # The start-up (imports, connecting) of producers started together costs each more
        # CPU than a lone one's (they share the cores and caches): subtract that, measured
        # the same way (a one-comment file each), or it reads as a cost per comment.
        together = _startup_together(stack, producers, timeout)

        made = [_fill(stack, f"fleet{i}", n, seed + 1 + i) for i in range(producers)]
        runs = [
            (producer_cmd(f, f"producer-fleet{i}"), stack.root / "logs" / f"producer-fleet{i}.log")
            for i, (f, _) in enumerate(made)
        ]
        assert server.proc is not None
        watch = [*stack.procs, server.proc]
        for meter in meters.values():
            meter.start()
        measured = run_measured_together(runs, stack.env(), watch, timeout)
        spent = {key: meter.stop() for key, meter in meters.items()}
        for i, (_, src) in enumerate(made):
            _check(stack.output / f"fleet{i}.json", src)
        lones += [
            _lone(stack, meters["redis"], k, n, seed, timeout)
            for k in range(LONE_BEFORE, LONE_BEFORE + LONE_AFTER)
        ]
    total = n * producers
    alone = [(cpu - startup) / n * US for cpu, _, _ in lones]
    return {
        "comments": n,
        "producers": producers,
        "lones": alone,
        "lone": median(alone),
        "lone_redis": median(redis for _, _, redis in lones) / n * US,
        "lone_rate": n / median(wall for _, wall, _ in lones),
        "each": [(cpu - together) / n * US for cpu, _ in measured],
        "startup": startup,
        "startup_together": together,
        **{key: value / total * US for key, value in spent.items()},
        "rate": total / max(wall for _, wall in measured),
    }


def _lone(
    stack: Stack, redis: Meter, k: int, n: int, seed: int, timeout: float
) -> tuple[float, float, float]:
    """One lone producer's run on a folder of its own (its output checked): its CPU seconds,
    its wall seconds, and Redis's CPU seconds meanwhile."""
    folder, source = _fill(stack, f"lone{k}", n, seed + 100 + k)
    redis.start()
    cpu, wall = _producer(stack, folder, f"producer-lone{k}", timeout)
    redis_cpu = redis.stop()
    _check(stack.output / f"lone{k}.json", source)
    return cpu, wall, redis_cpu


def _startup_together(stack: Stack, producers: int, timeout: float, runs: int = 2) -> float:
    """The CPU of one of ``producers`` producers started at once, each on a folder of one
    one-comment file (as :func:`~bench.controlplane.startup_cpu`): the least over ``runs`` of
    their mean."""
    assert stack.redis.proc is not None
    watch = [*stack.procs, stack.redis.proc]
    best = float("inf")
    for run in range(runs):
        folders = [startup_folder(stack, f"input-together{run}-{i}") for i in range(producers)]
        logs = [stack.root / "logs" / f"producer-together{i}.log" for i in range(producers)]
        cmds = [
            (producer_cmd(f, f"producer-together{i}"), log)
            for i, (f, log) in enumerate(zip(folders, logs, strict=True))
        ]
        measured = run_measured_together(cmds, stack.env(), watch, timeout)
        best = min(best, sum(cpu for cpu, _ in measured) / producers)
    return best


def fleet_report(found: dict[str, Any]) -> str:
    """The lone producer against each of the ``N``; Redis per comment and its ceiling."""
    lone, each = found["lone"], found["each"]
    worst = max(each) / lone - 1 if lone > 0 else float("inf")
    ceiling = US / found["redis"] if found["redis"] > 0 else float("inf")
    return "\n".join(
        [
            f"fleet: {found['producers']} producers on {found['producers']} folders of "
            f"{found['comments']:,} comments (downloader JSON Lines), one Redis",
            f"  lone producer {lone:.2f} us/comment, the median of "
            + ", ".join(f"{v:.2f}" for v in found["lones"])
            + f" ({LONE_BEFORE} runs before the {found['producers']}, {LONE_AFTER} after; "
            f"redis {found['lone_redis']:.2f}, {found['lone_rate']:,.0f} comments/s wall)",
            "  each of the "
            + str(found["producers"])
            + ": "
            + ", ".join(f"{v:.2f}" for v in each)
            + f" us/comment (worst {worst:+.1%} against the lone one)",
            f"  beside them: redis {found['redis']:.2f}, results {found['results']:.2f}, "
            f"null workers {found['null_workers']:.2f} us/comment; {found['rate']:,.0f} "
            "comments/s wall in all",
            f"  one Redis core at {found['redis']:.2f} us/comment: about {ceiling:,.0f} comments/s",
            f"  start-up subtracted: {found['startup']:.2f} CPU s alone, "
            f"{found['startup_together']:.2f} CPU s each of {found['producers']} started together",
        ]
    )
