"""The producer's memory, in Redis: which file content was done with which model.

One hash field per input file name. A restarted producer reads it to tell finished files
(skip), files in flight (keep following) and new or changed ones (submit). The model is part
of the record because outputs made by another model must be redone, not silently kept. Each
entry also names the job that currently owns the file, so that the outcome of an older job
(for content since replaced) never decides about the file, and the output name the file owns.

Entries of files that have left the input folder are pruned at each rescan, with their output
name claims: the ledger is as large as the folder, not as the history.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson
import redis

from emotions.constants import LEDGER_KEY, OUTPUTS_KEY
from emotions.files import display_name
from emotions.output import alternative_name, output_name


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
    output: str = ""

    def same_content(self, digest: str, model: str) -> bool:
        """True when this entry describes exactly this content under this model."""
        return self.digest == digest and self.model == model

    def unchanged_on_disk(self, size: int, mtime: float) -> bool:
        """Cheap check before hashing: size and mtime as they were when recorded."""
        return self.size == size and self.mtime == mtime


def ledger_key(name: str) -> str:
    """A Redis-safe field for a file name (names need not be valid UTF-8 on Linux)."""
    return display_name(name)


class Ledger:
    """Read and write ledger entries and output name claims."""

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

    def forget(self, name: str) -> None:
        """Remove a file's entry and release its output name claim."""
        entry = self.get(name)
        pipe = self.r.pipeline()
        pipe.hdel(LEDGER_KEY, ledger_key(name))
        if entry and entry.output:
            pipe.hdel(OUTPUTS_KEY, entry.output)
        pipe.execute()

    def all(self) -> dict[str, Entry]:
        raw: dict[bytes, bytes] = self.r.hgetall(LEDGER_KEY)  # type: ignore[assignment]
        return {k.decode(): Entry(**orjson.loads(v)) for k, v in raw.items()}

    def claim_output(self, name: str) -> str:
        """The output file name of input ``name``: ``<stem>.json`` unless another input owns
        it, then ``<stem>~<hash>.json``. A claim stays with its input until it is pruned."""
        owner = ledger_key(name)
        for candidate in (output_name(name), alternative_name(name)):
            self.r.hsetnx(OUTPUTS_KEY, candidate, owner)
            if self.r.hget(OUTPUTS_KEY, candidate) == owner.encode():
                return candidate
        raise RuntimeError(f"no free output name for {owner!r}")  # a SHA-256 collision

    def prune(self, present: set[str], keep: set[str]) -> int:
        """Forget files no longer in the input folder (``present``), except ``keep`` (names
        of jobs still followed); their output claims go with them. The count removed."""
        shown = {ledger_key(n) for n in present | keep}
        gone = [k for k in self.r.hkeys(LEDGER_KEY) if k.decode() not in shown]  # type: ignore[union-attr]
        if not gone:
            return 0
        claims: dict[bytes, bytes] = self.r.hgetall(OUTPUTS_KEY)  # type: ignore[assignment]
        pipe = self.r.pipeline()
        pipe.hdel(LEDGER_KEY, *gone)
        released = [out for out, owner in claims.items() if owner in set(gone)]
        if released:
            pipe.hdel(OUTPUTS_KEY, *released)
        pipe.execute()
        return len(gone)
