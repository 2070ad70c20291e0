"""Labels checked against fp32 at every start, and a slower path chosen when they disagree.

The checks the engine makes on itself (graphs against eager, the prepared mask against the
2D one) run the same dtype and attention kernel on both sides, so a defect common to both
passes. This one compares the path the worker will really use on the device, end to end
(dtype, mask format, attention kernel, graphs, through :meth:`Engine.classify_indices`), with
the same weights in float32 on the CPU (:class:`~worker.reference.Reference`), on a built-in
sample of comments in the model's languages and more, emoji only, a URL and one at the token
limit. Wherever the reference's two highest logits are further apart than
:data:`~emotions.constants.SELFTEST_GAP`, the labels must be identical (closer calls may flip
on rounding, and would flip between two fp32 runs on different hardware too).

If they differ, the worker steps down and checks again, in order: CUDA graphs off; another
SDPA kernel (PyTorch's choice without cuDNN's, then the math kernel); fp32 on the device. A
step is never undone, so a path that failed is never run. If even the last one disagrees,
the worker refuses to start (its labels cannot be trusted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from emotions.constants import SELFTEST_GAP
from emotions.errors import ModelLoadError
from worker.device import Forward
from worker.inference import Engine
from worker.reference import Reference

log = logging.getLogger(__name__)

SAMPLE: tuple[str, ...] = (
    "This video made my day, thank you so much!",
    "I can't believe how bad this is, what a waste of time.",
    "Wow, I did not expect that ending at all.",
    "Why does nobody talk about the sound design here?",
    "I miss my grandmother, she used to sing this song.",
    "هذا الفيديو رائع جدا، شكرا لك",
    "لماذا حذفوا المقطع الأخير؟ هذا مزعج",
    "أنا حزين جدا بعد سماع هذا الخبر",
    "C'est vraiment génial, j'adore cette chanson !",
    "Je ne comprends pas pourquoi tout le monde déteste ce film.",
    "Quelle honte, ils devraient s'excuser.",
    "No entiendo nada, ¿alguien me explica?",
    "Me encanta, lo escucho todos los días.",
    "Qué miedo me dio esa parte del video.",
    "Wat een mooie video, echt geweldig gedaan.",
    "Ik ben zo teleurgesteld in deze aflevering.",
    "Dank je wel voor de uitleg, heel duidelijk!",
    "Bu video harika, çok teşekkürler!",
    "Bunu izlediğim için pişmanım, berbat.",
    "Çok komik, gülmekten öldüm",
    "この曲 本当に 大好き です",
    "なんでこんなに悲しいの…",
    "очень крутое видео спасибо автору",
    "Это просто ужасно, зачем вы это сделали?",
    "यह वीडियो बहुत अच्छा है, धन्यवाद!",
    "मुझे यह बिल्कुल पसंद नहीं आया",
    "😊",
    "😡😡😡",
    "🔥🔥🔥 🙌",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
    "first!!!",
    "",
    "lol",
)
# The token-limit comment: long enough to be cut at any model's maximum.
LONG_COMMENT = "I can't believe how good this is, what a gift to everyone who listens. " * 80


@dataclass(frozen=True)
class Agreement:
    """The outcome of one comparison with the fp32 reference."""

    compared: int  # comments
    confident: int  # of which the reference's top-2 gap exceeds SELFTEST_GAP
    differ: int  # of those, labels unlike the reference's

    def __str__(self) -> str:
        same = self.confident - self.differ
        return f"{same}/{self.confident} confident labels as fp32 ({self.compared} compared)"


@dataclass(frozen=True)
class StepDown:
    """A slower path: ``apply`` moves the engine onto it for good."""

    name: str
    apply: Callable[[Engine], None]


def sample_texts() -> list[str]:
    """The built-in sample: every language and kind above, and one at the token limit."""
    return [*SAMPLE, LONG_COMMENT]


def compare(engine: Engine, reference_logits: torch.Tensor, texts: Sequence[str]) -> Agreement:
    """Label ``texts`` on the engine's current path and compare with the reference's logits."""
    got = torch.from_numpy(engine.classify_indices(texts))
    top2 = reference_logits.topk(2, dim=-1).values
    confident = (top2[:, 0] - top2[:, 1]) > SELFTEST_GAP
    differ = confident & (reference_logits.argmax(dim=-1) != got)
    return Agreement(len(texts), int(confident.sum()), int(differ.sum()))


def self_test(engine: Engine, reference: Reference, steps: Sequence[StepDown]) -> Agreement:
    """Check the engine against fp32, stepping down until it agrees; records the outcome in
    ``engine.about``. Raises :class:`ModelLoadError` if no path agrees."""
    texts = sample_texts()
    expected = reference.logits(engine.tokenize(texts))
    agreement = compare(engine, expected, texts)
    reasons: list[str] = []
    for step in steps:
        if not agreement.differ:
            break
        why = f"{agreement.differ} labels differed from fp32 on {describe_path(engine)}"
        log.warning("self-test: %s; stepping down: %s", why, step.name)
        reasons.append(f"{why} -> {step.name}")
        step.apply(engine)
        agreement = compare(engine, expected, texts)
    engine.about["self_test"] = str(agreement)
    engine.about["path_chosen_because"] = "; ".join(reasons) or "the first path agreed"
    if agreement.differ:
        raise ModelLoadError(
            f"self-test: {agreement.differ} labels differ from fp32 on the CPU even on the "
            f"last path ({describe_path(engine)}); this GPU's results cannot be trusted"
        )
    where = "fp32 on the CPU against itself" if engine.device.type == "cpu" else "the device"
    log.info("self-test (%s): %s on %s", where, agreement, describe_path(engine))
    return agreement


def describe_path(engine: Engine) -> str:
    """The path's dtype, attention kernel, mask format and graphs, in a few words."""
    about = engine.about
    return (
        f"{about.get('dtype', '?')}, attention {about.get('attention', 'default')}, "
        f"{engine.mask_format} mask, graphs {'on' if graphs_on(engine) else 'off'}"
    )


def graphs_on(engine: Engine) -> bool:
    """Whether any captured graph runs forwards."""
    return engine.graphs is not None and bool(engine.graphs.shapes)


def graphs_off(engine: Engine) -> None:
    """Step down: drop every graph (their forwards run eagerly from now on)."""
    if engine.graphs is not None:
        engine.graphs.drop()
    engine.about["graphs"] = "off (self-test)"


class KernelForward:
    """``forward`` run under ``sdpa_kernel(backends)``. Wrapping one again replaces its
    backends (nested ``sdpa_kernel`` contexts would let the inner one win)."""

    def __init__(self, forward: Forward, backends: list[SDPBackend]) -> None:
        self.inner: Forward = forward.inner if isinstance(forward, KernelForward) else forward
        self.backends = backends

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with sdpa_kernel(self.backends):
            return self.inner(inputs)


def attention_kernels(name: str, backends: list[SDPBackend]) -> Callable[[Engine], None]:
    """Step down: run every forward under ``sdpa_kernel(backends)`` (graphs are off by then:
    a captured graph keeps the kernel it was captured with)."""

    def apply(engine: Engine) -> None:
        graphs_off(engine)
        engine.forward = KernelForward(engine.forward, backends)
        engine.about["attention"] = name

    return apply


def step_downs(engine: Engine, to_fp32: Callable[[Engine], None] | None) -> list[StepDown]:
    """The steps that change anything on this engine, in order."""
    steps = []
    if graphs_on(engine):
        steps.append(StepDown("CUDA graphs off", graphs_off))
    if engine.device.type == "cuda":
        no_cudnn = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
        steps.append(StepDown("attention without cuDNN", attention_kernels("no-cudnn", no_cudnn)))
    steps.append(StepDown("math attention kernel", attention_kernels("math", [SDPBackend.MATH])))
    if to_fp32 is not None:
        steps.append(StepDown("fp32 on the device", to_fp32))
    return steps
