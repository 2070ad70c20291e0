"""The model holder: one warm copy of the classifier per worker process.

Lifecycle: ``load()`` (tokenizer, weights, labels, device) -> ``warm_up()`` (one tiny batch,
so the first real chunk pays no lazy-initialisation cost) -> ``ready``. :func:`preflight`
runs the cheap checks in the worker's main process before any child is forked, so a worker
that cannot work stops at once instead of restarting a failing child forever.
"""

from __future__ import annotations

import logging
import os
import re
from enum import Enum
from typing import TYPE_CHECKING, Any

from emotions.errors import ConfigurationError, ModelLoadError
from emotions.settings import Settings

if TYPE_CHECKING:
    from worker.inference import Engine

log = logging.getLogger(__name__)

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")
NO_GPU_MESSAGE = (
    "no CUDA device is visible to this worker (torch.cuda.is_available() is False). "
    "Workers are GPU-only by default; to run on the CPU, set EMOTIONS_DEVICE=cpu."
)


class State(Enum):
    """Where a holder is in its lifecycle."""

    EMPTY = "empty"
    LOADED = "loaded"
    READY = "ready"


def check_device(device: str) -> None:
    """Raise :class:`ConfigurationError` unless ``device`` exists here. Does not initialise CUDA.

    NVML-based detection keeps CUDA uninitialised in a parent that will fork (a forked child
    cannot use a CUDA context created before the fork).
    """
    if device == "cpu":
        return
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    if not torch.cuda.is_available():
        raise ConfigurationError(NO_GPU_MESSAGE)
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigurationError(
            f"EMOTIONS_DEVICE={device} but only {torch.cuda.device_count()} GPU(s) are visible"
        )


def labels_from_config(config: Any) -> list[str]:
    """Labels in index order, exactly as ``config.id2label`` has them (SEED-SPEC 4.2)."""
    id2label = {int(k): v for k, v in config.id2label.items()}
    return [id2label[i] for i in range(config.num_labels)]


def check_config(config: Any, model: str) -> list[str]:
    """Log the labels; warn loudly when the checkpoint does not look like a multi-label one."""
    labels = labels_from_config(config)
    log.info("model %s has %d labels: %s", model, len(labels), ", ".join(labels))
    if getattr(config, "problem_type", None) != "multi_label_classification":
        log.warning(
            "model %s has problem_type=%r, not 'multi_label_classification': scores are still "
            "computed with sigmoid, but check that this is the GoEmotions checkpoint you meant",
            model,
            getattr(config, "problem_type", None),
        )
    if labels and all(_GENERIC_LABEL.match(label) for label in labels):
        log.warning("model %s has generic labels (LABEL_0...): its config lacks id2label", model)
    return labels


def preflight(settings: Settings) -> list[str]:
    """Cheap checks for the worker's main process: the device exists, the config loads."""
    check_device(settings.device)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(settings.model)
    except Exception as e:  # hub errors, missing folder, bad JSON: all mean "cannot load"
        raise ModelLoadError(f"cannot load the config of model {settings.model!r}: {e}") from e
    return check_config(config, settings.model)


class ModelHolder:
    """Owns the tokenizer, the model and the :class:`~worker.inference.Engine` built on them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = State.EMPTY
        self._engine: Engine | None = None

    @property
    def ready(self) -> bool:
        """True once loaded and warmed up."""
        return self.state is State.READY

    @property
    def engine(self) -> Engine:
        """The inference engine; loads and warms up the model on first use."""
        if not self.ready:
            self.load()
            self.warm_up()
        assert self._engine is not None
        return self._engine

    def load(self) -> None:
        """Load tokenizer and weights onto the device; fp16 and SDPA attention on CUDA."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from worker.inference import Engine

        hf_logging.disable_progress_bar()
        check_device(self.settings.device)
        device = torch.device(self.settings.device)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        name = self.settings.model
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    name, dtype=dtype, attn_implementation="sdpa"
                )
            except (ValueError, ImportError):  # architectures without SDPA support
                model = AutoModelForSequenceClassification.from_pretrained(name, dtype=dtype)
        except Exception as e:  # missing files, corrupt weights, unknown architecture
            raise ModelLoadError(f"cannot load model {name!r}: {e}") from e
        _check_vocabulary(tokenizer, model.config, name)
        model.to(device).eval()
        labels = check_config(model.config, name)
        max_length = self.settings.max_length or _model_max_length(tokenizer, model.config)

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return model(**inputs).logits

        self.model = model
        self._engine = Engine(
            tokenizer,
            forward,
            labels,
            device,
            batch_size=self.settings.batch_size,
            max_length=max_length,
            token_budget=self.settings.token_budget,
        )
        self.state = State.LOADED
        log.info("model %s loaded on %s (%s, max_length=%d)", name, device, dtype, max_length)

    def warm_up(self) -> None:
        """Run one small batch so kernels and allocator pools exist before the first chunk."""
        if self._engine is None:
            raise RuntimeError("warm_up() before load()")
        # Short and maximum-length inputs, so the first real chunk meets no cold code path.
        self._engine.classify(["warm up", "😊", "warm up " * self._engine.max_length])
        self.state = State.READY


def _check_vocabulary(tokenizer: Any, config: Any, name: str) -> None:
    """Refuse a tokenizer that does not fit the model (transformers 5 quietly builds a 5-token
    one for a folder without tokenizer files: every comment would become ``[UNK]``)."""
    size, expected = len(tokenizer), int(getattr(config, "vocab_size", 0) or 0)
    if expected and not expected // 2 <= size <= expected:
        raise ModelLoadError(
            f"the tokenizer of {name!r} has {size} tokens but the model expects {expected}; "
            "are the tokenizer files (tokenizer.json or vocab.txt/sentencepiece) missing?"
        )


def _model_max_length(tokenizer: Any, config: Any) -> int:
    """The tokenizer's maximum, bounded by the position embeddings (hub tokenizers may say 1e30)."""
    limit = int(getattr(tokenizer, "model_max_length", 512) or 512)
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models reserve padding_idx + 1 positions.
        offset = 2 if getattr(config, "model_type", "") in {"roberta", "xlm-roberta"} else 0
        limit = min(limit, int(positions) - offset)
    return limit
