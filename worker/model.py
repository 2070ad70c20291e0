"""The model holder: one warm copy of the classifier per worker process.

Lifecycle: ``load()`` (tokenizer, weights, labels, device, engine) -> ``warm_up()`` (every kind
of batch once, CUDA graphs captured and checked, so the first real chunk pays no
lazy-initialisation cost) -> ``ready``. :func:`preflight`
runs the cheap checks in the worker's main process before any child is forked, so a worker
that cannot work stops at once instead of restarting a failing child forever.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import threading
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
    """Labels in index order, exactly as ``config.id2label`` has them (a hard-coded list
    would silently mislabel another checkpoint)."""
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
        self._loading = threading.Lock()
        self.model: Any = None  # the model on the device
        self.reference: Any = None  # worker.reference.Reference: fp32 on the CPU

    @property
    def ready(self) -> bool:
        """True once loaded and warmed up."""
        return self.state is State.READY

    @property
    def engine(self) -> Engine:
        """The inference engine; loads and warms up the model on first use (once, even when
        several threads ask at the same time)."""
        if not self.ready:
            with self._loading:
                if self.state is State.EMPTY:
                    self.load()
                if not self.ready:
                    self.warm_up()
        assert self._engine is not None
        return self._engine

    @property
    def loaded_engine(self) -> Engine:
        """The engine once loaded, before or after its warm-up (for a tool that reports on the
        warm-up and self-test as they happen)."""
        if self._engine is None:
            raise RuntimeError("loaded_engine before load()")
        return self._engine

    def load(self) -> None:
        """Load tokenizer and weights: fp32 on the CPU (the self-test's reference, and the
        relabelling of rows whose device logits are not finite), and a copy on the device, in
        fp16 with SDPA attention on CUDA (the CPU worker uses the fp32 model itself)."""
        import torch

        from worker.cputhreads import sized_threads, work_per_token
        from worker.device import limit_tokenizer_threads, tokenizer_threads
        from worker.engine import build_engine
        from worker.reference import Reference

        check_device(self.settings.device)
        device = torch.device(self.settings.device)
        threads = tokenizer_threads(self.settings.tokenizer_threads, self.settings.device)
        limit_tokenizer_threads(threads)  # before the first tokenization of this process
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        name = self.settings.model
        tokenizer, reference = load_pretrained(name, torch.float32)
        _check_vocabulary(tokenizer, reference.config, name)
        reference.eval()
        model = reference if device.type == "cpu" else copy.deepcopy(reference)
        model.to(device=device, dtype=dtype).eval()
        labels = check_config(model.config, name)
        max_length = self.settings.max_length or _model_max_length(tokenizer, model.config)

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return model(**inputs).logits

        def forward_fp32(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return reference(**inputs).logits

        self.model = model
        # The CPU worker's small forwards run on one thread (worker.cputhreads).
        run = (
            sized_threads(forward, work_per_token(model.config))
            if device.type == "cpu"
            else forward
        )
        engine = build_engine(self.settings, tokenizer, run, labels, device, max_length)
        self.reference = Reference(forward_fp32, engine.pad_id)
        engine.relabel = self.reference.indices
        engine.about.update(
            model=name, dtype=str(dtype).removeprefix("torch."), tokenizer_threads=threads
        )
        self._engine = engine
        self.state = State.LOADED
        log.info(
            "model %s loaded on %s (%s, max_length=%d, tokenizer threads=%d)",
            name,
            device,
            dtype,
            max_length,
            threads,
        )

    def to_fp32(self, engine: Engine) -> None:
        """Self-test step-down: the device model in float32 from now on (graphs are off)."""
        import torch

        engine.graphs = None
        self.model.to(dtype=torch.float32)
        engine.about.update(dtype="float32", graphs="off (fp32 step-down)")

    def warm_up(self) -> None:
        """Run every kind of batch once (and capture CUDA graphs), so the first real chunk meets
        no cold code path: lazy initialisation, allocator pools, maximum-length inputs. Then
        check the labels against fp32 (:mod:`worker.selftest`), stepping down if need be, and
        say in one line how the worker runs (:mod:`worker.describe`)."""
        from worker.describe import announce
        from worker.engine import warm_up
        from worker.selftest import self_test, step_downs

        if self.state is State.EMPTY:
            raise RuntimeError("warm_up() before load()")
        assert self._engine is not None
        warm_up(self._engine)
        fp32 = self.to_fp32 if self._engine.device.type != "cpu" else None
        self_test(self._engine, self.reference, step_downs(self._engine, fp32))
        announce(self._engine)
        self.state = State.READY


def load_pretrained(name: str, dtype: Any) -> tuple[Any, Any]:
    """Tokenizer and model from the hub id or folder ``name``, SDPA attention where supported.

    The dtype keyword follows the installed transformers (``torch_dtype`` before 4.56).
    """
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from worker.device import dtype_keyword

    hf_logging.disable_progress_bar()
    kwargs = {dtype_keyword(transformers.__version__): dtype}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                name, attn_implementation="sdpa", **kwargs
            )
        except (ValueError, ImportError):  # architectures without SDPA support
            model = AutoModelForSequenceClassification.from_pretrained(name, **kwargs)
    except Exception as e:  # missing files, corrupt weights, unknown architecture
        raise ModelLoadError(f"cannot load model {name!r}: {e}") from e
    return tokenizer, model


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
