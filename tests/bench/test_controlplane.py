"""bench.controlplane and its helpers: CPU seconds come from /proc and wait4 and grow with work;
a failing or hung measured command is an error, not a figure; the null worker is the production
worker with labels from the model's config; a short real run (redis-server, a null worker, a
results worker, producer --once) checks its output and reports the contract's last line."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench import null_worker
from bench.controlplane import measure_formats, measure_small_files, report
from bench.cpu import Meter, cpu_seconds, run_measured, run_measured_together
from bench.fleet import fleet_report, measure_fleet
from bench.null_worker import NullEngine


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_of_this_process_grow_with_work() -> None:
    before = cpu_seconds(os.getpid())
    burn(0.3)
    assert cpu_seconds(os.getpid()) - before >= 0.25
    assert cpu_seconds(2**22 + 12345) == 0.0  # no such process: nothing, not an error


def test_meter_charges_off_the_idle_rate() -> None:
    meter = Meter([os.getpid()], idle_rate=0.0)
    meter.start()
    burn(0.3)
    busy = meter.stop()
    assert busy >= 0.25
    meter.idle_rate = 1.0  # as if the process burned a core while idle
    meter.start()
    burn(0.2)
    assert meter.stop() < 0.1


def test_run_measured_reports_the_child_cpu_and_refuses_failures(tmp_path: Path) -> None:
    log = tmp_path / "log"
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    cpu, wall = run_measured([sys.executable, "-c", spin], dict(os.environ), log, [], 60)
    assert cpu >= 0.25 and wall >= cpu * 0.5
    with pytest.raises(RuntimeError, match="exited 3"):
        run_measured([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), log, [], 60)
    with pytest.raises(RuntimeError, match="hung"):
        run_measured([sys.executable, "-c", "import time; time.sleep(60)"], {}, log, [], 0.5)


def test_runs_measured_together_each_get_their_own_cpu_and_one_failure_stops_all(
    tmp_path: Path,
) -> None:
    spin = "import time\nend = time.process_time() + {}\nwhile time.process_time() < end: pass"
    runs = [([sys.executable, "-c", spin.format(s)], tmp_path / f"log{s}") for s in (0.1, 0.4)]
    (short, _), (long, _) = run_measured_together(runs, dict(os.environ), [], 60)
    assert 0.08 <= short < 0.3 and long >= 0.35  # each its own CPU, not the sum
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    failing = [sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(4)"]
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="exited 4"):
        run_measured_together(
            [(sleeper, tmp_path / "a"), (failing, tmp_path / "b")], dict(os.environ), [], 60
        )
    assert time.monotonic() - began < 30  # the sleeper was killed, not waited for
    with pytest.raises(RuntimeError, match="hung"):
        run_measured_together([(sleeper, tmp_path / "c")], {}, [], 0.5)


def test_null_engine_labels_at_once_in_order() -> None:
    engine = NullEngine(["a", "b", "c"])
    pending = engine.submit(["", "x", "xy", "xyz"])
    assert np.array_equal(pending.indices(), [0, 1, 2, 0])
    assert engine.labels == ["a", "b", "c"]


def test_importing_the_null_worker_leaves_the_real_model_holder_alone() -> None:
    from worker.model import ModelHolder

    assert ModelHolder.load is not null_worker.load
    assert ModelHolder.warm_up is not null_worker.warm_up


def test_report_ends_with_the_contract_line() -> None:
    row = {
        "comments": 10.0,
        "producer": 2.5,
        "results": 1.5,
        "redis": 0.5,
        "null_workers": 3.0,
        "rate": 100.0,
        "startup": 0.3,
    }
    text = report({"downloader-jsonl": row, "json-array": {**row, "producer": 9.0}}, None, 2)
    assert text.splitlines()[-1] == (
        "control plane: producer 2.50 us/comment, results 1.50 us/comment, redis 0.50 "
        "us/comment; one producer feeds 400,000 comments/s"
    )


# Comments per file of the short real runs. Every figure is a difference: a process's CPU over
# the run less its idle rate (Redis, the workers) or less the producer's start-up CPU, read in
# clock ticks of 10 ms. At about 4 us/comment the results worker's work on a few hundred
# comments is under one tick, so its figure was that noise and came out 0.0 on a loaded machine;
# 30,000 comments make every process's work 0.1-0.3 CPU s, ten ticks and more above the noise,
# while the run's wall time is still mostly the start-up of the workers.
REAL_RUN_COMMENTS = 30_000


@pytest.mark.slow
def test_a_short_real_run_checks_its_output_and_measures_every_process(tmp_path: Path) -> None:
    from bench.run import ensure_model

    model = ensure_model("tiny")
    n = REAL_RUN_COMMENTS
    found = measure_formats(model, n, 1, ["downloader-jsonl", "api-threads"], 3)
    for name in ("downloader-jsonl", "api-threads"):
        assert found[name]["comments"] == n
        assert found[name]["producer"] > 0 and found[name]["results"] > 0
        assert found[name]["null_workers"] > 0 and found[name]["rate"] > 0
    small = measure_small_files(model, 5, 0)
    assert small["files"] == 5 and small["redis_commands"] > 0
    last = report(found, small, 1).splitlines()[-1]
    assert re.fullmatch(
        r"control plane: producer [\d.]+ us/comment, results [\d.]+ us/comment, redis "
        r"[\d.]+ us/comment; one producer feeds [\d,]+ comments/s",
        last,
    )


def test_fleet_report_compares_each_producer_with_the_lone_one() -> None:
    found = {
        "comments": 1000,
        "producers": 4,
        "lones": [9.0, 10.0, 12.0, 9.5, 10.5],
        "lone": 10.0,
        "lone_redis": 1.0,
        "lone_rate": 5000.0,
        "each": [10.5, 10.0, 11.0, 9.5],
        "redis": 2.0,
        "results": 3.0,
        "null_workers": 4.0,
        "rate": 9000.0,
        "startup": 0.4,
        "startup_together": 0.5,
    }
    text = fleet_report(found)
    assert "10.50, 10.00, 11.00, 9.50 us/comment (worst +10.0% against the lone one)" in text
    assert text.splitlines()[1] == (
        "  lone producer 10.00 us/comment, the median of 9.00, 10.00, 12.00, 9.50, 10.50 (3 runs "
        "before the 4, 2 after; redis 1.00, 5,000 comments/s wall)"
    )
    assert "  one Redis core at 2.00 us/comment: about 500,000 comments/s" in text
    assert text.splitlines()[-1] == (
        "  start-up subtracted: 0.40 CPU s alone, 0.50 CPU s each of 4 started together"
    )


def test_report_adds_the_result_backend_when_redis_is_split() -> None:
    row = {
        "comments": 10.0,
        "producer": 2.5,
        "results": 1.5,
        "redis": 0.5,
        "redis_backend": 0.75,
        "null_workers": 3.0,
        "rate": 100.0,
        "startup": 0.3,
    }
    lines = report({"downloader-jsonl": row}, None, 1).splitlines()
    assert lines[2].split()[4] == "1.25"  # the redis column: both servers
    assert lines[3].split() == [
        "redis",
        "split:",
        "broker",
        "0.50,",
        "result",
        "backend",
        "0.75",
        "us/comment",
    ]
    assert "redis 1.25 us/comment" in lines[-1]


@pytest.mark.slow
def test_a_short_fleet_run_checks_every_output(tmp_path: Path) -> None:
    from bench.run import ensure_model

    found = measure_fleet(ensure_model("tiny"), REAL_RUN_COMMENTS, 2, 1, 5)
    assert found["producers"] == 2 and len(found["each"]) == 2
    assert len(found["lones"]) == 5 and found["lone"] == sorted(found["lones"])[2]
    assert found["lone"] > 0 and all(v > 0 for v in found["each"])
    assert found["redis"] > 0 and found["results"] > 0 and found["rate"] > 0


def test_the_window_reaches_every_process_the_benchmark_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--window`` sets EMOTIONS_WINDOW for the processes the stack starts; the calling
    shell's other settings still do not reach them."""
    from bench.controlplane import WINDOW_ENV, _stack

    monkeypatch.setenv(WINDOW_ENV, "3")
    monkeypatch.setenv("EMOTIONS_CHUNK_SIZE", "7")
    with _stack("window-", tmp_path) as (stack, _, _):
        env = stack.env()
    assert env[WINDOW_ENV] == "3"
    assert "EMOTIONS_CHUNK_SIZE" not in env
