"""``python -m worker.check``, end to end on the CPU with a tiny model (as CI runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.procs import ROOT
from worker import check
from worker.inference import Engine


def run_check(model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONS_")}
    env.update(EMOTIONS_MODEL=str(model), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "worker.check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_check_runs_end_to_end_on_a_cpu(bert_model: Path) -> None:
    done = run_check(bert_model, "--device", "cpu", "--comments", "300")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        "gpu:",
        "torch:",
        "transformers:",
        "revision:",
        "labels:",
        "path:",
        "self-test:",
        "throughput:",
        "gpu busy:",
        "peak gpu memory:",
    ):
        assert f"\n{line}" in f"\n{out}", line
    assert "on a CPU" in out and "admiration, amusement" in out
    assert "300 synthetic, multilingual" in out
    assert out.strip().splitlines()[-1].startswith("VERDICT: OK: labels agree with fp32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_check_says_when_there_is_no_gpu(bert_model: Path) -> None:
    done = run_check(bert_model, "--device", "cuda", "--comments", "10")
    assert done.returncode == 2
    assert "VERDICT: cannot run" in done.stdout and "EMOTIONS_DEVICE=cpu" in done.stdout


def test_labels_that_disagree_with_fp32_fail_the_check(
    bert_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every path of the engine gives shifted labels; the fp32 reference does not."""
    logits = Engine.logits

    def wrong(self: Engine, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return logits(self, ids, lengths).roll(1, dims=-1)

    monkeypatch.setattr(Engine, "logits", wrong)
    code = check.main(["--device", "cpu", "--model", str(bert_model), "--comments", "10"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "VERDICT: FAIL" in out and "cannot be trusted" in out
    assert "throughput:" not in out  # nothing is timed on a path that gave wrong labels


def test_the_corpus_is_multilingual_heavy_tailed_and_seeded() -> None:
    texts = check.synthetic_corpus(1000)
    assert texts == check.synthetic_corpus(1000) and texts != check.synthetic_corpus(1000, 1)
    lengths = sorted(len(t.split()) for t in texts)
    assert lengths[len(lengths) // 2] < 12 and lengths[-1] >= check.WALL_WORDS
    joined = " ".join(texts)
    assert all(probe in joined for probe in ("هذا", "очень", "😊", "https://"))


def test_the_driver_version_is_read_from_the_driver(tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC "
        "2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    assert check.driver_version(version) == "535.104.05"
    assert check.driver_version(tmp_path / "missing") == "unknown"


def test_the_colab_notebook_runs_the_check_once_the_worker_is_up() -> None:
    import json

    cells = json.loads((ROOT / "examples" / "colab.ipynb").read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    worker = next(i for i, s in enumerate(code) if "celery -A worker worker" in s)
    checks = [i for i, s in enumerate(code) if "python -m worker.check" in s]
    assert checks and checks[0] > worker


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_check_times_a_gpu_with_cuda_events(bert_model: Path) -> None:
    done = run_check(bert_model, "--device", "cuda", "--comments", "2000")
    assert done.returncode == 0, done.stdout + done.stderr
    busy = next(line for line in done.stdout.splitlines() if line.startswith("gpu busy:"))
    assert 0.0 < float(busy.split()[2]) <= 1.0
    assert "MiB" in done.stdout and "VERDICT: OK" in done.stdout
