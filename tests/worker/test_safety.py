"""The GPU safety net, piece by piece on the CPU: which errors are device faults, when a worker
takes its card as broken, non-finite rows, the all-or-nothing graph capture, the fp32
self-test and its step-downs, the start-up description, and tokenizer threads sized by the
host's GPUs. (The same behaviour in real worker processes: tests/integration/test_gpu_faults.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend

from emotions.constants import DEVICE_FAULT_CHUNKS, NONFINITE_LABEL, SELFTEST_GAP
from emotions.errors import DeviceFaultError, ModelLoadError
from emotions.settings import load_settings
from worker import describe, faults
from worker.device import host_gpus, tokenizer_threads
from worker.graphs import capture_all
from worker.inference import Engine, flag_nonfinite
from worker.model import ModelHolder
from worker.selftest import (
    LONG_COMMENT,
    attention_kernels,
    compare,
    sample_texts,
    self_test,
    step_downs,
)


def loaded(model: Path) -> ModelHolder:
    holder = ModelHolder(load_settings(model=str(model), device="cpu"))
    holder.load()
    holder.warm_up()
    return holder


# --- which errors are device faults ---------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("CUDA error: device-side assert triggered"),
        RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"),
        RuntimeError("CUDA driver error: unspecified launch failure"),
    ],
)
def test_device_faults_are_recognised(error: Exception) -> None:
    assert faults.is_device_fault(error)
    fault = faults.as_device_fault(error, "GPU cuda:0 (Tesla T4)")
    assert isinstance(fault, DeviceFaultError)
    assert str(fault).startswith("GPU cuda:0 (Tesla T4) failed: ") and str(error) in str(fault)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),  # retried on smaller batches instead
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
        ValueError("CUDA error"),  # not a RuntimeError: not from torch
        KeyError("x"),
    ],
)
def test_other_errors_are_not_device_faults(error: Exception) -> None:
    assert not faults.is_device_fault(error)
    assert faults.as_device_fault(error, "GPU") is None


def test_a_card_is_broken_after_faults_on_different_chunks_in_a_row() -> None:
    faults.chunk_finished()
    assert faults.record_fault("job", 1) == 1
    assert faults.record_fault("job", 1) == 1  # the same chunk again: the chunk's fault
    assert faults.record_fault("job", 2) == DEVICE_FAULT_CHUNKS
    faults.chunk_finished()  # a chunk finished in between: the count starts over
    assert faults.record_fault("job", 3) == 1
    faults.chunk_finished()


# --- non-finite logits ----------------------------------------------------------------------


def test_rows_with_non_finite_logits_are_flagged_on_the_device() -> None:
    logits = torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [float("inf"), 1.0], [3.0, 0.0]])
    got = flag_nonfinite(logits.argmax(dim=-1), logits)
    assert got.tolist() == [1, NONFINITE_LABEL, NONFINITE_LABEL, 0]


def nan_rows_forward(engine: Engine, every: int) -> None:
    """The engine's device path gives NaN logits to rows whose length is a multiple of
    ``every`` (its fp32 reference is left alone)."""
    inner = engine.forward

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = inner(inputs).clone()
        lengths = (inputs["attention_mask"].reshape(len(out), -1) != 0).sum(dim=-1)
        out[lengths % every == 0] = float("nan")
        return out

    engine.forward = forward


def test_nan_rows_get_their_fp32_labels_and_are_counted(bert_model: Path) -> None:
    holder = loaded(bert_model)
    engine = holder.engine
    texts = [f"comment {'word ' * (i % 5)} number {i}" for i in range(30)]
    expected = engine.classify_indices(texts)
    nan_rows_forward(engine, 2)
    pending = engine.submit(texts)
    got = pending.indices()
    lengths = [len(r) for r in engine.tokenize(texts)]
    flagged = sum(1 for n in lengths if n % 2 == 0)
    assert flagged and pending.stats.nonfinite == flagged
    assert got.tolist() == expected.tolist()


def test_nan_rows_without_an_fp32_path_fail_the_chunk(bert_model: Path) -> None:
    engine = loaded(bert_model).engine
    engine.relabel = None
    nan_rows_forward(engine, 1)
    with pytest.raises(RuntimeError, match="non-finite logits"):
        engine.classify_indices(["a", "b"])


# --- graph capture --------------------------------------------------------------------------


def test_a_failed_capture_keeps_no_graph() -> None:
    calls: list[tuple[int, int]] = []

    def capture(rows: int, width: int) -> str:
        calls.append((rows, width))
        if width == 64:
            raise RuntimeError("operation not permitted when stream is capturing")
        return f"{rows}x{width}"

    captured, failure = capture_all({32: 16, 64: 16, 128: 8}, capture)
    assert calls == [(8, 128), (16, 64)]  # widest first; nothing after the failure
    assert captured == {128: "8x128"}  # what the caller drops
    assert (
        failure == "capture of 16x64 failed: RuntimeError: operation not permitted when "
        "stream is capturing"
    )
    assert capture_all({8: 4}, capture) == ({8: "4x8"}, None)


# --- the fp32 self-test ---------------------------------------------------------------------


def test_the_sample_covers_the_languages_emoji_a_url_and_the_token_limit(bert_model: Path) -> None:
    texts = sample_texts()
    assert len(texts) >= 32
    joined = " ".join(texts)
    for probe in (
        "the",
        "هذا",
        "vraiment",
        "entiendo",
        "mooie",
        "harika",
        "大好き",
        "крутое",
        "वीडियो",
        "😊",
        "https://",
    ):
        assert probe in joined, probe
    engine = loaded(bert_model).engine
    assert len(engine.tokenize([LONG_COMMENT])[0]) == engine.max_length


def shift_labels_on(engine: Engine, attention: set[str]) -> None:
    """A wrong device path: logits shifted by one label while the attention path is one of
    ``attention``."""
    inner = engine.forward

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = inner(inputs)
        return out.roll(1, dims=-1) if engine.about["attention"] in attention else out

    engine.forward = forward


def test_a_mismatch_steps_down_to_the_next_path(
    bert_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = loaded(bert_model)
    engine = holder.engine
    shift_labels_on(engine, {"default"})
    agreement = self_test(engine, holder.reference, step_downs(engine, None))
    assert agreement.differ == 0 and agreement.confident > 0
    assert engine.about["attention"] == "math"
    assert "differed from fp32" in engine.about["path_chosen_because"]
    assert "stepping down: math attention kernel" in caplog.text


def test_no_agreeing_path_refuses_to_run(bert_model: Path) -> None:
    holder = loaded(bert_model)
    engine = holder.engine
    shift_labels_on(engine, {"default", "math"})
    with pytest.raises(ModelLoadError, match="cannot be trusted"):
        self_test(engine, holder.reference, step_downs(engine, None))


def test_the_fp32_step_down_is_last_and_only_off_the_cpu(bert_model: Path) -> None:
    engine = loaded(bert_model).engine
    applied: list[str] = []
    steps = step_downs(engine, lambda e: applied.append("fp32"))
    assert [s.name for s in steps] == ["math attention kernel", "fp32 on the device"]
    steps[-1].apply(engine)
    assert applied == ["fp32"]


def test_a_later_kernel_step_replaces_the_earlier_one(bert_model: Path) -> None:
    engine = loaded(bert_model).engine
    seen: list[tuple[bool, bool, bool]] = []
    inner = engine.forward

    def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        b = torch.backends.cuda
        seen.append((b.flash_sdp_enabled(), b.mem_efficient_sdp_enabled(), b.math_sdp_enabled()))
        return inner(inputs)

    engine.forward = forward
    attention_kernels("no-cudnn", [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH])(engine)
    engine.classify(["a"])
    attention_kernels("math", [SDPBackend.MATH])(engine)
    engine.classify(["a"])
    assert seen == [(True, False, True), (False, False, True)]
    assert engine.about["attention"] == "math"


def test_only_confident_labels_must_agree(bert_model: Path) -> None:
    """A different label counts where the fp32 top-2 gap exceeds the tolerance, not below."""
    engine = loaded(bert_model).engine
    texts = ["one", "two", "three"]
    got = engine.classify_indices(texts).tolist()
    reference = torch.zeros(3, len(engine.labels))
    other = [(g + 1) % len(engine.labels) for g in got]
    reference[0, got[0]] = 5.0  # confident, the same label
    reference[1, other[1]] = SELFTEST_GAP / 2  # a close call, another label
    reference[2, other[2]] = 5.0  # confident, another label
    result = compare(engine, reference, texts)
    assert (result.compared, result.confident, result.differ) == (3, 2, 1)


# --- the start-up description ---------------------------------------------------------------


def test_the_start_up_line_and_the_stats_say_how_the_worker_runs(
    bert_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        loaded(bert_model)
    line = next(r.getMessage() for r in caplog.records if "worker runs on:" in r.getMessage())
    for fact in (
        "device=cpu",
        "dtype=float32",
        "attention=default",
        "mask=",
        "graphs=off",
        "batch_size=16",
        "tokenizer=",
        "self_test=",
    ):
        assert fact in line, fact
    about = describe.published()
    assert about["device"] == "cpu" and about["self_test"].endswith("compared)")


def test_an_oversized_description_still_fits() -> None:
    describe.publish({"device": "cpu", "model": "x" * describe.ABOUT_BYTES})
    assert "summary" in describe.published()


# --- tokenizer threads ----------------------------------------------------------------------


def no_nvml() -> int:
    raise OSError("libnvidia-ml.so.1: cannot open shared object file")


def test_host_gpus_counts_the_driver_entries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", no_nvml)
    for i in range(4):
        (tmp_path / f"0000:0{i}:00.0").mkdir()
    assert host_gpus(tmp_path) == 4
    assert host_gpus(tmp_path / "missing") == 0
    (tmp_path / "not-a-gpu").write_text("")
    assert host_gpus(tmp_path) == 4


def test_host_gpus_asks_nvml_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: 8)
    assert host_gpus(tmp_path) == 8
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: -1)  # NVML failed
    (tmp_path / "0000:01:00.0").mkdir()
    assert host_gpus(tmp_path) == 1


@pytest.mark.parametrize(("gpus", "share"), [(1, 8), (2, 8), (4, 4), (8, 2), (16, 1), (0, 8)])
def test_tokenizer_threads_are_the_cores_shared_by_the_hosts_gpus(
    monkeypatch: pytest.MonkeyPatch, gpus: int, share: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)))
    assert tokenizer_threads(0, "cuda:0", gpus) == share
    assert tokenizer_threads(3, "cuda:0", gpus) == 3  # a setting wins


def test_tokenizer_threads_ignore_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under CUDA_VISIBLE_DEVICES=N torch sees one GPU; the host's count decides."""
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr("worker.device.host_gpus", lambda: 8)
    assert tokenizer_threads(0, "cuda:0") == 2
    assert tokenizer_threads(0, "cpu") == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="capture needs a CUDA device")
def test_a_capture_that_raises_drops_every_graph_and_leaves_cuda_usable(bert_model: Path) -> None:
    from worker.graphs import CudaGraphs

    engine = ModelHolder(load_settings(model=str(bert_model), device="cuda")).engine
    calls = []

    def step(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        calls.append(ids.shape[1])
        if torch.cuda.is_current_stream_capturing() and ids.shape[1] == 16:
            raise RuntimeError("an op that refuses capture")
        return engine.step(ids, lengths)

    graphs = CudaGraphs(step, {8: 4, 16: 4, 32: 4}, engine.device, engine.pad_id)
    graphs.capture()
    assert graphs.failure is not None and "4x16" in graphs.failure
    assert graphs.shapes == {}
    assert torch.cuda.current_stream(engine.device) == torch.cuda.default_stream(engine.device)
    engine.graphs = graphs
    assert len(engine.classify(["still runs", "eagerly"])) == 2
