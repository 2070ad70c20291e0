"""A seeded, heavy-tailed corpus of YouTube-like comments for the benchmark and its tests.

Why heavy-tailed: padding waste, and so the whole case for length-aware batching, comes from
the spread of comment lengths. Most YouTube comments are a dozen tokens ("first!", "❤️ love
it"), a few percent are paragraphs, and a few per thousand are walls of text (lyrics,
copypasta) that hit the model's 512-token limit. A corpus of uniform lengths would show no
difference between the contenders, so lengths here are drawn from a lognormal body plus a
Pareto tail plus rare walls of text, in many languages and scripts, with emoji, URLs,
timestamps and mentions. Words come mostly from the stand-in tokenizer's training sentences
(:data:`harness.standins.SEED_SENTENCES`), so the stand-in splits them into roughly as many
pieces per word as a multilingual WordPiece does; other scripts become one ``[UNK]`` per word.

Everything is a pure function of ``(n, seed)``: the padding test in CI and the benchmark on
any machine see exactly the same comments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

from harness.standins import SEED_SENTENCES

# Extra sentences per language; together with SEED_SENTENCES they form the word banks.
_EXTRA: dict[str, tuple[str, ...]] = {
    "en": (
        "this is the best video I have seen in a long time",
        "the part at the end made me cry ngl",
        "who else is here after the update",
        "I don't agree with this at all but good video anyway",
        "came here from the other channel and not disappointed",
    ),
    "es": ("este canal merece más suscriptores", "la mejor canción del año sin duda"),
    "fr": ("merci pour cette vidéo, très intéressant", "qui est là en 2026 ?"),
    "ar": ("ما شاء الله عمل رائع", "أفضل قناة على يوتيوب"),
    "tr": ("bu şarkıyı her gün dinliyorum", "emeğine sağlık kardeşim"),
    "nl": ("dit is echt de beste video ooit", "wie kijkt er nog in 2026"),
    "pt": ("muito bom, parabéns pelo trabalho", "quem está assistindo em 2026"),
    "ru": ("очень крутое видео спасибо автору", "кто смотрит в 2026 году"),
    "hi": ("यह वीडियो बहुत अच्छा है भाई", "सबसे अच्छा गाना"),
    "ja": ("この曲 本当に 大好き です", "最高 の 動画 ありがとう"),
    "id": ("videonya keren banget bang", "siapa yang nonton tahun 2026"),
    "de": ("richtig gutes Video danke dafür", "wer ist auch 2026 noch hier"),
}
# Which seed sentence belongs to which language (by index in SEED_SENTENCES).
_SEED_LANG = (
    "en",
    "en",
    "en",
    "ar",
    "ar",
    "fr",
    "fr",
    "es",
    "es",
    "nl",
    "nl",
    "tr",
    "tr",
    "en",
    "en",
    "en",
    "en",
    "en",
)
# Language mix: English-heavy, as on YouTube, with the fine-tuning languages next.
_LANG_WEIGHTS = {
    "en": 45,
    "es": 10,
    "ar": 8,
    "fr": 7,
    "tr": 7,
    "nl": 3,
    "pt": 5,
    "ru": 4,
    "hi": 4,
    "ja": 2,
    "id": 3,
    "de": 2,
}
EMOJI = ("😂", "❤️", "🔥", "😭", "👍", "🙏", "😍", "💯", "🤣", "😢", "👏", "🥰", "😡", "🤔")
_URLS = (
    "https://youtu.be/dQw4w9WgXcQ",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
    "https://example.com/merch",
    "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC",
)
_MENTIONS = ("@creator", "@lofi_girl", "@user-xk3j9", "@MrBeast")


def _banks() -> dict[str, list[str]]:
    """Words per language, from the seed sentences and the extras."""
    banks: dict[str, list[str]] = {lang: [] for lang in _LANG_WEIGHTS}
    for lang, sentence in zip(_SEED_LANG, SEED_SENTENCES, strict=True):
        if not sentence.startswith(("check ", "😂", "❤")):  # URL/emoji seeds are decorations
            banks[lang].extend(sentence.split())
    for lang, sentences in _EXTRA.items():
        for sentence in sentences:
            banks[lang].extend(sentence.split())
    return banks


_BANKS = _banks()
_LANGS = list(_LANG_WEIGHTS)
_WEIGHTS = list(_LANG_WEIGHTS.values())


def _word_count(rng: random.Random) -> int:
    """Words in one comment: lognormal body, Pareto tail, rare walls of text."""
    u = rng.random()
    if u < 0.004:  # walls of text: lyrics, copypasta; truncated at 512 tokens
        return rng.randint(400, 1500)
    if u < 0.03:  # paragraphs: Pareto from 40 words, shape 1.3
        return min(2000, int(40 / (1.0 - rng.random()) ** (1 / 1.3)))
    return max(1, round(rng.lognormvariate(math.log(7), 0.75)))


def _text(rng: random.Random, words: int) -> str:
    """A comment of about ``words`` words in one language, with YouTube decorations."""
    bank = _BANKS[rng.choices(_LANGS, _WEIGHTS)[0]]
    parts = [rng.choice(bank) for _ in range(words)]
    if rng.random() < 0.08:  # a timestamp people jump to
        parts.insert(rng.randint(0, len(parts)), f"{rng.randint(0, 59)}:{rng.randint(0, 59):02d}")
    if rng.random() < 0.05:
        parts.insert(0, rng.choice(_MENTIONS))
    if rng.random() < 0.03:
        parts.append(rng.choice(_URLS))
    if rng.random() < 0.25:
        parts.append("".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 4))))
    return " ".join(parts)


def comments(n: int, seed: int = 0) -> Iterator[str]:
    """Yield ``n`` comment texts, deterministically from ``seed``.

    About 2% are emoji only and 0.3% are empty: real files have both, and both must still get
    a label.
    """
    rng = random.Random(seed)
    for _ in range(n):
        kind = rng.random()
        if kind < 0.003:
            yield ""
        elif kind < 0.023:
            yield "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 6)))
        else:
            yield _text(rng, _word_count(rng))


def records(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``{"id", "comment"}`` records (the original script's input format) of :func:`comments`."""
    for i, text in enumerate(comments(n, seed)):
        yield {"id": f"c{i}", "comment": text}
