"""The output file: its name and its bytes.

``<output dir>/<input file stem>.json`` holds a JSON array with one record per line, records
in input order, each exactly ``{"id", "comment", "emotion"}``: the id and the text exactly as
the input gave them, the label exactly as the model's config names it. Non-ASCII text is
written as is (UTF-8). Chunks are rendered one at a time and streamed into the file, so a
file of any size is written in bounded memory.

Naming rule: the output of ``<stem>.<ext>`` is ``<stem>.json`` (bytes of a name that are not
UTF-8 are written ``_xNN``, so output names are always valid UTF-8). A stem longer than the name
limit is cut (by bytes, at a character boundary) and followed by ``~`` and 8 hex digits of
the SHA-256 of the whole input name. If that output name already belongs to another input
file (``a.json`` and ``a.csv``), the later one gets ``<stem>~<hash>.json`` instead; which
input owns which output name is recorded in Redis, so the rule gives the same answer after a
restart.

Where: the producer decides the output path once, as an absolute path stored in the job, and
the results worker writes exactly there (:func:`job_output_path`), so a worker started with
another ``EMOTIONS_OUTPUT_DIR`` or working directory cannot disagree with the producer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import orjson

from emotions.constants import NAME_BYTES, NAME_HASH_CHARS, OUTPUT_SUFFIX
from emotions.files import display_name, inside, safe_name, shorten
from emotions.formats import Record


def output_name(input_name: str) -> str:
    """The normal output name of ``input_name``: ``<stem>.json``, shortened if need be."""
    visible = display_name(input_name).replace("\\", "_")  # \xNN -> _xNN
    stem = Path(safe_name(visible)).stem.lstrip(".") or "_"
    return shorten(stem, NAME_BYTES - len(OUTPUT_SUFFIX)) + OUTPUT_SUFFIX


def alternative_name(input_name: str, owner: str | None = None) -> str:
    """The output name used when the normal one belongs to another input: the stem and a hash
    of the input name, or of ``owner`` (who claims it: its folder and name), which differs
    between folders where the name alone does not."""
    key = input_name if owner is None else owner
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    tail = f"~{digest[:NAME_HASH_CHARS]}{OUTPUT_SUFFIX}"
    stem = output_name(input_name).removesuffix(OUTPUT_SUFFIX)
    return shorten(stem, NAME_BYTES - len(tail)) + tail


_dumps = orjson.dumps


def job_output_path(recorded: str, output_dir: Path) -> Path:
    """The file a job's output is written to: the absolute path the producer recorded (its
    name a plain file name, checked again here), or, for a job recorded with a bare name by an
    earlier version, that name in ``output_dir``."""
    path = Path(recorded)
    if path.is_absolute():
        return inside(path.parent, path.name)
    return inside(output_dir, recorded)


def _record(rid: object, text: str, label: str) -> bytes:
    try:
        return _dumps({"id": rid, "comment": text, "emotion": label})
    except TypeError:  # an integer id beyond 64 bits: orjson refuses, json writes it exactly
        value = {"id": rid, "comment": text, "emotion": label}
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def render(records: Sequence[Record], labels: Sequence[str]) -> bytes:
    """One chunk's output records, one JSON object per line, ready to splice into the file.

    One ``orjson.dumps`` per record in a list comprehension: the chunk is rendered in a tight
    loop; only a chunk holding an id orjson refuses (an integer beyond 64 bits) goes record by
    record through the exact path.
    """
    pairs = list(zip(records, labels, strict=True))
    try:
        return b",\n".join(
            [_dumps({"id": r[0], "comment": r[1], "emotion": label}) for r, label in pairs]
        )
    except TypeError:
        return b",\n".join([_record(r[0], r[1], label) for r, label in pairs])


def render_indexed(records: Sequence[Record], indices: Sequence[int], names: list[str]) -> bytes:
    """:func:`render` with labels given as indexes into ``names`` (as chunk results store them)."""
    return render(records, [names[i] for i in indices])


class _Out(msgspec.Struct, gc=False):
    """One output record: msgspec writes its fields in this order, as ``{"id", ...}``."""

    id: Any
    comment: str
    emotion: str


_ENCODER = msgspec.json.Encoder()
_EXACT_IDS = frozenset({str, int})  # written alike by msgspec, orjson and json (see below)


def render_columns(ids: Sequence[Any], texts: Sequence[str], labels: Iterable[str]) -> bytes:
    """:func:`render` of records given as columns: the same bytes, at a third of the cost.

    The records are built by ``map`` (no Python step per record) and written by msgspec as
    JSON Lines in one call; a raw line break never occurs inside JSON (one in a string is
    written ``\\n``), so putting a comma before each gives :func:`render`'s layout. msgspec
    writes strings exactly as orjson does (every code point checked in the tests) and integers
    of any size as their digits (as :func:`render` does with ``json`` beyond 64 bits); any
    other id (a float, an array...) goes through :func:`render` itself.
    """
    labels = list(labels)
    if not len(ids) == len(texts) == len(labels):
        raise ValueError(f"{len(ids)} ids, {len(texts)} texts and {len(labels)} labels")
    if not ids:
        return b""
    if set(map(type, ids)) <= _EXACT_IDS:
        lines = _ENCODER.encode_lines(list(map(_Out, ids, texts, labels)))
        return lines[:-1].replace(b"\n", b",\n")
    return render([Record(i, t) for i, t in zip(ids, texts, strict=True)], labels)


def json_array(parts: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of the output file from each chunk's rendered records, in chunk order."""
    yield b"[\n"
    first = True
    for part in parts:
        if part:
            if not first:
                yield b",\n"
            yield part
            first = False
    yield b"\n]\n" if not first else b"]\n"
