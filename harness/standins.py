"""Offline stand-ins for ``AnasAlokla/multilingual_go_emotions``.

The model hub is unreachable from development and CI machines, so tests and the benchmark
build models locally: a ``transformers`` config carrying the 28 GoEmotions labels, random
weights, and a tokenizer trained on the fly with ``tokenizers``. They are saved to a folder
and loaded back through exactly the same ``from_pretrained`` path as the real model.

Two families are built because the published versions differ: v1.0 is BERT (cased
WordPiece, token type ids) and later versions may be XLM-RoBERTa (unigram, no token type ids).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

GO_EMOTIONS: tuple[str, ...] = (
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
)

Family = Literal["bert", "xlmr"]

# Multilingual seed text: the languages the model was fine-tuned on, plus emoji and URLs,
# which YouTube comments are full of.
SEED_SENTENCES: tuple[str, ...] = (
    "This video made my day, thank you so much!",
    "I can't believe how bad this is, what a waste of time.",
    "Why does nobody talk about the ending? I'm confused.",
    "هذا الفيديو رائع جدا، شكرا لك",
    "أنا حزين جدا بعد مشاهدة هذا",
    "C'est vraiment génial, j'adore cette chanson !",
    "Je suis déçu, la qualité a baissé.",
    "¡Qué vídeo tan bonito! Me encanta.",
    "No entiendo nada, ¿alguien me explica?",
    "Wat een mooie video, echt geweldig gedaan.",
    "Ik ben zo boos hierover.",
    "Bu video harika, çok teşekkürler!",
    "Çok üzgünüm, bu gerçekten kötü.",
    "😂😂😂 lmao",
    "❤️❤️ love it 🔥",
    "check https://youtu.be/dQw4w9WgXcQ at 2:31",
    "first!!!",
    "Who's watching in 2026?",
)


def corpus(n: int, seed: int = 0) -> Iterator[str]:
    """Yield ``n`` pseudo comments stitched from the seed sentences (deterministic)."""
    rng = random.Random(seed)
    for _ in range(n):
        yield " ".join(rng.choice(SEED_SENTENCES) for _ in range(rng.randint(1, 4)))


def build_tokenizer(family: Family, directory: Path, vocab_size: int = 2000) -> int:
    """Train a small tokenizer of ``family`` on the seed corpus, save it; its vocabulary size."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    texts = list(SEED_SENTENCES) + list(corpus(500))
    if family == "bert":
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer: Any = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special)
        tok.train_from_iterator(texts, trainer)
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=512,
        )
    else:
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=special, unk_token="<unk>"
        )
        tok.train_from_iterator(texts, trainer)
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            pad_token="<pad>",
            cls_token="<s>",
            sep_token="</s>",
            mask_token="<mask>",
            model_max_length=512,
            model_input_names=["input_ids", "attention_mask"],
        )
    fast.save_pretrained(str(directory))
    return len(fast)


def build_model(
    directory: Path,
    family: Family = "bert",
    *,
    layers: int = 2,
    hidden: int = 32,
    labels: Sequence[str] = GO_EMOTIONS,
    seed: int = 0,
    vocab_size: int = 2000,
    initializer_range: float = 0.5,
) -> Path:
    """Save a randomly initialised GoEmotions-shaped classifier and tokenizer to ``directory``.

    ``layers=12, hidden=768`` gives a model of the real model's shape, for benchmarks. The
    wide ``initializer_range`` makes random weights spread their top-1 over many labels, so a
    test can tell labels apart; a benchmark only needs the shape and may pass BERT's 0.02.
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        BertConfig,
        PretrainedConfig,
        XLMRobertaConfig,
    )

    directory.mkdir(parents=True, exist_ok=True)
    # The embedding matrix matches the trained vocabulary, as in every published checkpoint.
    vocab = build_tokenizer(family, directory, vocab_size=vocab_size)
    common: dict[str, Any] = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64) if hidden >= 64 else 2,
        intermediate_size=hidden * 4,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type="multi_label_classification",
        initializer_range=initializer_range,
    )
    config: PretrainedConfig
    if family == "bert":
        config = BertConfig(max_position_embeddings=512, **common)
    else:
        # RoBERTa offsets positions by padding_idx + 1, hence 514 for 512 tokens.
        config = XLMRobertaConfig(
            max_position_embeddings=514,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            **common,
        )
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(str(directory))
    return directory
