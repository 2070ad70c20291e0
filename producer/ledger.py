"""The producer's memory, in Redis: which file content was done with which model.

One hash field per input file name. A restarted producer reads it to tell finished files
(skip), files in flight (keep tracking) and new or changed ones (submit). The model is part
of the record because this project exists because a model was switched: outputs made by
another model are redone, not silently kept.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson
import redis

from emotions.constants import LEDGER_KEY


@dataclass(frozen=True, slots=True)
class Entry:
    """What the ledger knows of one input file."""

    job: str
    digest: str
    model: str
    state: str
    size: int
    mtime: float
    records: int = 0
    error: str = ""
    updated: float = 0.0

    def same_content(self, digest: str, model: str) -> bool:
        """True when this entry describes exactly this content under this model."""
        return self.digest == digest and self.model == model

    def unchanged_on_disk(self, size: int, mtime: float) -> bool:
        """Cheap check before hashing: size and mtime as they were when recorded."""
        return self.size == size and self.mtime == mtime


def ledger_key(name: str) -> str:
    """A Redis-safe field for a file name (names need not be valid UTF-8 on Linux)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Ledger:
    """Read and write ledger entries."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def get(self, name: str) -> Entry | None:
        raw = self.r.hget(LEDGER_KEY, ledger_key(name))
        return Entry(**orjson.loads(raw)) if raw else None

    def put(self, name: str, entry: Entry) -> Entry:
        entry = replace(entry, updated=time.time())
        self.r.hset(LEDGER_KEY, ledger_key(name), orjson.dumps(asdict(entry)))
        return entry

    def update(self, name: str, **changes: Any) -> Entry | None:
        """Change fields of an existing entry; None when there is none."""
        entry = self.get(name)
        return self.put(name, replace(entry, **changes)) if entry else None

    def all(self) -> dict[str, Entry]:
        raw: dict[bytes, bytes] = self.r.hgetall(LEDGER_KEY)  # type: ignore[assignment]
        return {k.decode(): Entry(**orjson.loads(v)) for k, v in raw.items()}
