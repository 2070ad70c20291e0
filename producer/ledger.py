"""The producer's memory, in Redis: which file content was done with which model.

One hash field per input file name, in a hash of the producer's own input folder (keyed by a
digest of its resolved path), so that several producers, each on its own folder, share one
Redis without reading or pruning each other's files. A restarted producer reads it to tell
finished files (skip), files in flight (keep following) and new or changed ones (submit).
The model is part of the record because outputs made by another model must be redone, not
silently kept. Each entry also names the job that currently owns the file, the absolute path
of the output it owns, and when the file was first seen (the feeding order across restarts).

Beside it, a small index of the jobs in flight (content digest -> file name) lets a new name
find the job of a file renamed in flight with one read, however large the folder.

Output names are claimed in a hash of the output folder (output name -> ``<input folder>/
<input name>``): two inputs, of one folder or of two producers writing to the same output
folder, never share an output file. A claim stays while its output file exists, also after
its input left the folder, so a later input of the same stem gets the alternative name
instead of overwriting that output.

Entries of files that have left the input folder are pruned at each rescan, and claims whose
input and output are both gone: the ledger is as large as the folder, not as the history.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import redis

from emotions.constants import (
    FOLDER_ID_CHARS,
    QUEUED,
    inflight_key,
    ledger_key,
    outputs_key,
)
from emotions.files import display_name
from emotions.output import alternative_name, output_name

# KEYS[1] ledger, KEYS[2] in-flight index. ARGV[1] field, ARGV[2] entry (JSON), ARGV[3] digest,
# ARGV[4] state, ARGV[5] the in-flight state, ARGV[6] the file's name as bytes. An entry in
# flight is indexed by its digest; one that left that state drops its index field, unless the
# field now names another file.
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then return 0 end
if ARGV[4] == ARGV[5] then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[6])
elseif redis.call('HGET', KEYS[2], ARGV[3]) == ARGV[6] then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
return 0
"""


def folder_id(folder: Path) -> str:
    """A short, stable id of a folder: the SHA-256 of its resolved path, in hex."""
    raw = os.fsencode(folder.resolve())
    return hashlib.sha256(raw).hexdigest()[:FOLDER_ID_CHARS]


def field_of(name: str) -> str:
    """A Redis-safe field for a file name (names need not be valid UTF-8 on Linux)."""
    return display_name(name)


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
    output: str = ""  # the absolute output path (older entries: a name in the output folder)
    first_seen: float = 0.0  # wall-clock time the producer first saw this name
    redone: int = 0  # times a missing output of this content was made again

    def same_content(self, digest: str, model: str) -> bool:
        """True when this entry describes exactly this content under this model."""
        return self.digest == digest and self.model == model

    def unchanged_on_disk(self, size: int, mtime: float) -> bool:
        """Cheap check before hashing: size and mtime as they were when recorded."""
        return self.size == size and self.mtime == mtime


def decode_entry(raw: bytes | None) -> Entry | None:
    """A ledger entry as read from Redis; None when there is none."""
    return Entry(**orjson.loads(raw)) if raw else None


class Ledger:
    """Read and write the ledger entries of one input folder and its output name claims."""

    def __init__(self, client: redis.Redis, input_dir: Path, output_dir: Path) -> None:
        self.r = client
        self.input_dir = input_dir
        self.folder = folder_id(input_dir)
        self.output_dir = output_dir
        self.key = ledger_key(self.folder)
        self.inflight = inflight_key(self.folder)
        self.outputs = outputs_key(folder_id(output_dir))
        self._put = client.register_script(_PUT)

    def owner(self, name: str) -> str:
        """How a claim names its input: this folder, then the file name."""
        return f"{self.folder}/{field_of(name)}"

    def get(self, name: str) -> Entry | None:
        return decode_entry(self.r.hget(self.key, field_of(name)))  # type: ignore[arg-type]

    def queue_get(self, pipe: Any, name: str) -> None:
        """Add :meth:`get`'s read to ``pipe`` (decode its reply with :func:`decode_entry`)."""
        pipe.hget(self.key, field_of(name))

    def put(self, name: str, entry: Entry, pipe: Any = None) -> Entry:
        """Write ``entry`` (and its in-flight index); on ``pipe`` when given, which the caller
        then executes (the producer writes a new job and its entry in one transaction)."""
        entry = replace(entry, updated=time.time())
        args: list[str | bytes] = [
            field_of(name),
            orjson.dumps(asdict(entry)),
            entry.digest,
            entry.state,
            QUEUED,
            os.fsencode(name),
        ]
        keys = [self.key, self.inflight]
        if pipe is None:
            self._put(keys=keys, args=args)
        else:
            # EVAL, not the registered script: redis-py checks a pipeline's scripts with a
            # SCRIPT EXISTS round trip of its own before every execute (one per new file).
            pipe.eval(_PUT, len(keys), *keys, *args)
        return entry

    def update(self, name: str, **changes: Any) -> Entry | None:
        """Change fields of an existing entry; None when there is none."""
        entry = self.get(name)
        return self.put(name, replace(entry, **changes)) if entry else None

    def renamed_from(self, digest: str) -> str | None:
        """The name of the file in flight with this content, if any (one read); the real
        name, also when it is not UTF-8."""
        raw = self.r.hget(self.inflight, digest)
        return os.fsdecode(raw) if raw else None

    def forget(self, name: str) -> None:
        """Remove a file's entry (renamed); its output name claim goes unless that output
        exists."""
        entry = self.get(name)
        pipe = self.r.pipeline()
        pipe.hdel(self.key, field_of(name))
        if entry and entry.digest and self.renamed_from(entry.digest) == name:
            pipe.hdel(self.inflight, entry.digest)
        if entry and entry.output and not self._exists(Path(entry.output).name):
            pipe.hdel(self.outputs, Path(entry.output).name)
        pipe.execute()

    def all(self) -> dict[str, Entry]:
        """Every entry (``status``, and the order of files in flight at start)."""
        raw: dict[bytes, bytes] = self.r.hgetall(self.key)  # type: ignore[assignment]
        return {k.decode(): Entry(**orjson.loads(v)) for k, v in raw.items()}

    def claim_output(self, name: str) -> str:
        """The output file name of input ``name``: ``<stem>.json`` unless another input owns
        it, then ``<stem>~<hash of the name>.json``, then, if an input of that name in another
        folder owns that too (several producers, one output folder), ``<stem>~<hash of this
        folder and the name>.json``. A claim stays while its input or output exists."""
        owner = self.owner(name)
        candidates = (output_name(name), alternative_name(name), alternative_name(name, owner))
        for candidate in candidates:
            pipe = self.r.pipeline(transaction=False)  # one round trip: claim, then read
            pipe.hsetnx(self.outputs, candidate, owner)
            pipe.hget(self.outputs, candidate)
            if pipe.execute()[1] == owner.encode():
                return candidate
        raise RuntimeError(f"no free output name for {owner!r}")  # a SHA-256 collision

    def prune(self, present: set[str], keep: set[str]) -> int:
        """Forget files no longer in the input folder (``present``), except ``keep`` (names
        of jobs still followed), and release this folder's claims whose input is gone and
        whose output does not exist. The count of entries removed."""
        shown = {field_of(n) for n in present | keep}
        fields: list[bytes] = self.r.hkeys(self.key)  # type: ignore[assignment]
        gone = [k for k in fields if k.decode() not in shown]
        pipe = self.r.pipeline()
        if gone:
            pipe.hdel(self.key, *gone)
            if stale := self._indexed(gone):
                pipe.hdel(self.inflight, *stale)
        mine = f"{self.folder}/".encode()
        claims: dict[bytes, bytes] = self.r.hgetall(self.outputs)  # type: ignore[assignment]
        released = [
            out
            for out, owner in claims.items()
            if owner.startswith(mine)
            and owner[len(mine) :].decode() not in shown
            and not self._exists(out.decode())
        ]
        if released:
            pipe.hdel(self.outputs, *released)
        pipe.execute()
        return len(gone)

    def _indexed(self, fields: list[bytes]) -> list[str]:
        """The in-flight index fields that name one of ``fields`` (entries being removed)."""
        raws: list[bytes | None] = self.r.hmget(self.key, fields)  # type: ignore[assignment]
        digests = sorted({orjson.loads(raw)["digest"] for raw in raws if raw} - {""})
        if not digests:
            return []
        names: list[bytes | None] = self.r.hmget(self.inflight, digests)  # type: ignore[assignment]
        removed = {f.decode() for f in fields}
        return [
            d
            for d, n in zip(digests, names, strict=True)
            if n is not None and field_of(os.fsdecode(n)) in removed
        ]

    def _exists(self, output: str) -> bool:
        return os.path.lexists(self.output_dir / output)
