"""worker.model with the tiny offline stand-ins of both families (BERT and XLM-RoBERTa), loaded
through the same ``from_pretrained`` path as the published model, with the network cut off."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from emotions.errors import ConfigurationError, ModelLoadError, PermanentError
from emotions.settings import load_settings
from harness.standins import GO_EMOTIONS, SEED_SENTENCES
from worker.model import ModelHolder, State, check_device, labels_from_config, preflight

ARABIC = "هذا الفيديو رائع جدا، شكرا لك"
FRENCH = "C'est vraiment génial, j'adore cette chanson !"
SPANISH = "No entiendo nada, ¿alguien me explica?"
DUTCH = "Ik ben zo boos hierover."
TURKISH = "Çok üzgünüm, bu gerçekten kötü."
ENGLISH = "This video made my day, thank you so much!"
EMOJI = "😂😂😂🔥❤️"
HUGE = ("Bu video harika, çok teşekkürler! " * 3000)[:100_000]  # a 100 kB comment
SHORT = [
    ARABIC,
    FRENCH,
    SPANISH,
    DUTCH,
    TURKISH,
    ENGLISH,
    EMOJI,
    "",
    *SEED_SENTENCES,
    "ok",
    "wow!!! 🔥 " * 12,
]
COMMENTS = [*SHORT[:8], HUGE, *SHORT[8:], "a " * 300]  # with the 100 kB one and a long one


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Offline like CI: HF_HUB_OFFLINE=1, and any attempt to resolve or reach a host fails
    (and is recorded) instead of hanging."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in [k for k in os.environ if k.startswith("EMOTIONS_")]:
        monkeypatch.delenv(name)
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(address)
        raise OSError(f"network disabled in tests: connect to {address}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        raise socket.gaierror(f"network disabled in tests: resolve {host}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts


def holder_for(model: Path, **overrides: Any) -> ModelHolder:
    return ModelHolder(load_settings(model=str(model), device="cpu", **overrides))


def loaded(model: Path, **overrides: Any) -> ModelHolder:
    h = holder_for(model, **overrides)
    h.load()
    h.warm_up()
    return h


def variant(model: Path, dest: Path, **config: Any) -> Path:
    """A copy of ``model`` with keys of its ``config.json`` replaced (weights unchanged)."""
    shutil.copytree(model, dest)
    path = dest / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(config)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return dest


def pipeline_labels(model: Path, texts: list[str]) -> list[str]:
    """Top-1 labels of the reference: transformers' own text-classification pipeline."""
    from transformers import pipeline

    pipe = pipeline(
        "text-classification",
        model=str(model),
        tokenizer=str(model),
        top_k=1,
        function_to_apply="sigmoid",
        device="cpu",
    )
    out = pipe(texts, truncation=True, max_length=512, batch_size=1)
    return [(row[0] if isinstance(row, list) else row)["label"] for row in out]


# --- lifecycle -----------------------------------------------------------------------------


def test_lifecycle_load_warm_up_ready(any_model: Path) -> None:
    h = holder_for(any_model)
    assert h.state is State.EMPTY and not h.ready
    with pytest.raises(RuntimeError):
        h.warm_up()
    h.load()
    assert h.state is State.LOADED and not h.ready
    h.warm_up()
    assert h.state is State.READY and h.ready
    assert h.engine.classify([ENGLISH])[0] in GO_EMOTIONS


def test_engine_property_loads_once_and_keeps_the_model_warm(any_model: Path) -> None:
    h = holder_for(any_model)
    engine = h.engine
    assert h.ready
    model = h.model
    for _ in range(3):
        assert h.engine is engine
        engine.classify([FRENCH, SPANISH])
    assert h.model is model
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"


def test_load_touches_no_network(any_model: Path, no_network: list[Any]) -> None:
    h = loaded(any_model)
    h.engine.classify(SHORT[:5])
    assert no_network == []


# --- labels --------------------------------------------------------------------------------


def test_labels_are_config_id2label_in_index_order(any_model: Path) -> None:
    h = loaded(any_model)
    config = h.model.config
    assert h.engine.labels == [config.id2label[i] for i in range(config.num_labels)]
    assert h.engine.labels == list(GO_EMOTIONS)
    raw = json.loads((any_model / "config.json").read_text(encoding="utf-8"))["id2label"]
    assert h.engine.labels == [raw[str(i)] for i in range(len(raw))]


def test_labels_match_the_transformers_pipeline(any_model: Path) -> None:
    h = loaded(any_model, batch_size=4)
    ours = h.engine.classify(COMMENTS)
    assert len(ours) == len(COMMENTS)
    assert ours == pipeline_labels(any_model, COMMENTS)
    assert len(set(ours)) > 1  # the stand-in spreads its top-1: a constant would prove little


def test_labels_do_not_depend_on_batching(any_model: Path) -> None:
    texts = [*SHORT, "a " * 100]  # padded rows next to a long one: the mask must hide them
    one = loaded(any_model, batch_size=1).engine.classify_indices(texts)
    many = loaded(any_model, batch_size=16).engine.classify_indices(texts)
    budget = loaded(any_model, batch_size=16, token_budget=300).engine.classify_indices(texts)
    assert one.tolist() == many.tolist() == budget.tolist()


def test_labels_follow_id2label_when_the_order_changes(any_model: Path, tmp_path: Path) -> None:
    permuted = list(reversed(GO_EMOTIONS))  # no label keeps its index
    other = variant(
        any_model,
        tmp_path / "permuted",
        id2label={str(i): label for i, label in enumerate(permuted)},
        label2id={label: i for i, label in enumerate(permuted)},
    )
    engine = loaded(any_model).engine
    indices = engine.classify_indices(SHORT).tolist()
    original = engine.classify(SHORT)
    relabelled = loaded(other).engine.classify(SHORT)
    assert original == [GO_EMOTIONS[i] for i in indices]
    assert relabelled == [permuted[i] for i in indices]
    assert all(a != b for a, b in zip(original, relabelled, strict=True))


def test_id2label_key_order_in_the_file_does_not_matter(any_model: Path, tmp_path: Path) -> None:
    shuffled = {str(i): GO_EMOTIONS[i] for i in [*range(27, 13, -1), *range(14)]}
    other = variant(any_model, tmp_path / "shuffled", id2label=shuffled)
    assert loaded(other).engine.labels == list(GO_EMOTIONS)


def test_labels_from_config_uses_indexes_not_insertion_order() -> None:
    class Config:
        num_labels = 3
        id2label = {"2": "c", 0: "a", "1": "b"}  # noqa: RUF012

    assert labels_from_config(Config()) == ["a", "b", "c"]


def test_load_logs_the_labels(any_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="worker.model"):
        loaded(any_model)
    assert "28 labels: admiration, amusement, anger" in caplog.text
    assert "neutral" in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_warns_when_problem_type_is_not_multi_label(
    any_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = variant(any_model, tmp_path / "single", problem_type="single_label_classification")
    with caplog.at_level(logging.INFO, logger="worker.model"):
        h = loaded(other)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("multi_label_classification" in w and "single_label" in w for w in warnings)
    # A warning, not a refusal: the labels still come from sigmoid top-1 of the same model.
    assert h.engine.classify(SHORT) == loaded(any_model).engine.classify(SHORT)


def test_warns_when_labels_are_generic(
    any_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    generic = {str(i): f"LABEL_{i}" for i in range(28)}
    other = variant(
        any_model,
        tmp_path / "generic",
        id2label=generic,
        label2id={v: int(k) for k, v in generic.items()},
    )
    with caplog.at_level(logging.WARNING, logger="worker.model"):
        h = loaded(other)
    assert any("LABEL_0" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert h.engine.labels == [f"LABEL_{i}" for i in range(28)]


# --- families and lengths ------------------------------------------------------------------


def test_xlmr_runs_without_token_type_ids(xlmr_model: Path) -> None:
    h = loaded(xlmr_model, batch_size=4)
    assert h.model.config.model_type == "xlm-roberta"
    assert "token_type_ids" not in h.engine.tokenizer.model_input_names
    seen: list[dict[str, torch.Tensor]] = []
    forward = h.engine.forward

    def spy(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        seen.append(inputs)
        return forward(inputs)

    h.engine.forward = spy
    labels = h.engine.classify([TURKISH, EMOJI, "", ARABIC, "ok"])
    assert len(labels) == 5 and all(label in GO_EMOTIONS for label in labels)
    assert seen and all(set(s) == {"input_ids", "attention_mask"} for s in seen)
    # RoBERTa derives positions from the pad id: padding must use the tokenizer's (1), not 0.
    assert h.engine.pad_id == h.model.config.pad_token_id == 1
    # The engine passes a prepared boolean mask (rows, 1, 1, width): False marks padding.
    padded = [s["input_ids"][~s["attention_mask"].reshape(s["input_ids"].shape)] for s in seen]
    assert any(p.numel() for p in padded) and all(p.eq(1).all() for p in padded)


def test_max_length_defaults_to_512_for_both_families(bert_model: Path, xlmr_model: Path) -> None:
    bert, xlmr = loaded(bert_model), loaded(xlmr_model)
    assert bert.model.config.max_position_embeddings == 512
    assert xlmr.model.config.max_position_embeddings == 514
    assert bert.engine.max_length == 512
    assert xlmr.engine.max_length == 512


def test_huge_model_max_length_is_bounded_by_positions(any_model: Path, tmp_path: Path) -> None:
    other = shutil.copytree(any_model, tmp_path / "unbounded")
    path = other / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model_max_length"] = 1000000000000000019884624838656  # what many hub tokenizers say
    path.write_text(json.dumps(data), encoding="utf-8")
    h = loaded(other)
    assert h.engine.max_length == 512
    assert max(len(r) for r in h.engine.tokenize([HUGE])) == 512
    assert h.engine.classify([HUGE])[0] in GO_EMOTIONS


def test_a_100kb_comment_is_truncated_to_512_tokens(any_model: Path) -> None:
    h = loaded(any_model)
    assert len(h.engine.tokenize([HUGE])[0]) == 512
    labels = h.engine.classify([HUGE, ENGLISH])
    assert len(labels) == 2
    assert h.engine.last_plan is not None and h.engine.last_plan.padded_tokens == 1024


def test_emotions_max_length_overrides_and_truncates(
    any_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOTIONS_MAX_LENGTH", "12")
    h = loaded(any_model)
    assert h.settings.max_length == 12 and h.engine.max_length == 12
    rows = h.engine.tokenize([HUGE, ENGLISH * 10, "ok"])
    assert [len(r) for r in rows[:2]] == [12, 12] and len(rows[2]) < 12
    # Only the first 12 tokens count: what comes after them cannot change the label.
    a, b = h.engine.classify_indices([ENGLISH * 10, ENGLISH * 10 + ARABIC * 5]).tolist()
    assert a == b
    assert h.engine.last_plan is not None and h.engine.last_plan.padded_tokens == 24


def test_bert_with_only_vocab_txt_loads_and_labels_the_same(
    bert_model: Path, tmp_path: Path
) -> None:
    """The published repository may ship only vocab.txt (no tokenizer.json)."""
    other = shutil.copytree(bert_model, tmp_path / "vocab-only")
    vocab = json.loads((other / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    (other / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (other / "tokenizer.json").unlink()
    (other / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": False, "tokenizer_class": "BertTokenizer"}), encoding="utf-8"
    )
    h = loaded(other)
    assert h.engine.max_length == 512
    assert h.engine.classify(SHORT) == loaded(bert_model).engine.classify(SHORT)


# --- device and load failures --------------------------------------------------------------


def test_check_device_without_gpu_names_emotions_device_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(ConfigurationError, match="EMOTIONS_DEVICE=cpu"):
            check_device(device)
    check_device("cpu")


def test_check_device_with_too_few_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_device("cuda")
    check_device("cuda:0")
    with pytest.raises(ConfigurationError, match="EMOTIONS_DEVICE=cuda:1"):
        check_device("cuda:1")


def test_gpu_less_machine_refuses_cuda_at_preflight_and_load(
    bert_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU machine
    settings = load_settings(model=str(bert_model), device="cuda")
    with pytest.raises(ConfigurationError, match="EMOTIONS_DEVICE=cpu") as info:
        preflight(settings)
    assert isinstance(info.value, PermanentError)
    h = ModelHolder(settings)
    with pytest.raises(ConfigurationError, match="EMOTIONS_DEVICE=cpu"):
        h.load()
    assert h.state is State.EMPTY


def test_preflight_returns_the_labels(any_model: Path) -> None:
    assert preflight(load_settings(model=str(any_model), device="cpu")) == list(GO_EMOTIONS)


def _broken(kind: str, model: Path, root: Path) -> Path:
    if kind == "missing":
        return root / "no-such-model"
    if kind == "empty":
        (root / "empty").mkdir()
        return root / "empty"
    target = shutil.copytree(model, root / kind)
    if kind == "bad-config":
        (target / "config.json").write_text("{not json", encoding="utf-8")
    elif kind == "no-weights":
        (target / "model.safetensors").unlink()
    elif kind == "corrupt-weights":
        (target / "model.safetensors").write_bytes(b"\x00garbage" * 64)
    return target


@pytest.mark.parametrize("kind", ["missing", "empty", "bad-config"])
def test_preflight_with_a_broken_model_dir_raises_model_load_error(
    kind: str, bert_model: Path, tmp_path: Path, no_network: list[Any]
) -> None:
    path = _broken(kind, bert_model, tmp_path)
    with pytest.raises(ModelLoadError) as info:
        preflight(load_settings(model=str(path), device="cpu"))
    assert str(path) in str(info.value)
    assert isinstance(info.value, PermanentError)
    assert no_network == []


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "bad-config", "no-weights", "corrupt-weights"]
)
def test_load_of_a_broken_model_dir_raises_model_load_error(
    kind: str, bert_model: Path, tmp_path: Path
) -> None:
    """A PermanentError, so a chunk task fails at once instead of retrying a hopeless load."""
    path = _broken(kind, bert_model, tmp_path)
    h = holder_for(path)
    with pytest.raises(ModelLoadError) as info:
        h.load()
    assert str(path) in str(info.value)
    assert h.state is State.EMPTY


def test_load_without_tokenizer_files_refuses(bert_model: Path, tmp_path: Path) -> None:
    """transformers quietly builds a 5-token tokenizer for a folder without tokenizer files;
    every comment would become [UNK] and get the same label. The load must refuse instead."""
    other = shutil.copytree(bert_model, tmp_path / "no-tokenizer")
    (other / "tokenizer.json").unlink()
    (other / "tokenizer_config.json").unlink()
    with pytest.raises(ModelLoadError):
        holder_for(other).load()
