"""The tests' settings on top of the shared harness: small chunks and short timers, so that a
file spans several chunks and faults are noticed within a test's time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emotions.chunking import chunks
from emotions.settings import load_settings
from harness.stack import RedisServer, Stack

TEST_ENV = {
    "EMOTIONS_CHUNK_SIZE": "8",
    "EMOTIONS_SETTLE_SECONDS": "0.3",
    "EMOTIONS_INCOMPLETE_SECONDS": "3",
    "EMOTIONS_RESCAN_SECONDS": "2",
    "EMOTIONS_RETRY_BACKOFF_MAX": "1",
}


def make_stack(root: Path, redis: RedisServer, model: Path, **env: str) -> Stack:
    """A stack with the tests' settings (``env`` overrides them)."""
    return Stack(root, redis, model, extra_env={**TEST_ENV, **env})


def comments(n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` input records with ids and texts that name their file (``tag``) and position."""
    return [{"id": f"{tag}{i}", "comment": f"{tag} comment number {i} 🎬"} for i in range(n)]


def assert_exactly_once(stack: Stack, stem: str, expected: list[dict[str, Any]]) -> None:
    """The output of ``stem`` holds exactly the ``expected`` records, in order."""
    out = stack.output_records(stem)
    assert [(r["id"], r["comment"]) for r in out] == [(e["id"], e["comment"]) for e in expected]


def started_marker(stack: Stack) -> Path:
    """A folder where the fault-injecting worker marks each chunk it starts (proof of work)."""
    path = stack.root / "started"
    path.mkdir(exist_ok=True)
    return path


def queue_and_unacked(stack: Stack) -> tuple[int, int]:
    """Chunk messages waiting in the inference queue, and messages taken but not acknowledged."""
    client = stack.redis.client()
    return client.llen("inference"), client.hlen("unacked")


def reference_labels(stack: Stack, records: list[dict[str, Any]], chunk_size: int) -> list[str]:
    """Each comment's label computed here, chunk by chunk as the workers get them."""
    from worker.model import ModelHolder  # torch: imported only by the tests that label

    settings = load_settings(model=str(stack.model), device="cpu")
    engine = ModelHolder(settings).engine
    labels: list[str] = []
    for chunk in chunks([r["comment"] for r in records], chunk_size, settings.chunk_bytes):
        labels += engine.classify(chunk)
    return labels


def varied(n: int, tag: str) -> list[dict[str, Any]]:
    """Comments of varied lengths and words, so that neighbouring chunks get other labels."""
    words = ["love", "hate", "why", "wow", "thanks", "sad", "lol", "angry", "great", "fear"]
    return [
        {"id": f"{tag}{i}", "comment": " ".join(words[(i * 7 + k) % 10] for k in range(1 + i % 9))}
        for i in range(n)
    ]
