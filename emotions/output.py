"""The output file: where it goes and what its bytes are.

``<output dir>/<input file stem>.json`` holds a JSON array with one record per line, records
in input order, each exactly ``{"id", "comment", "emotion"}``: the id and the text exactly as
the input gave them, the label exactly as the model's config names it. Non-ASCII text is
written as is (UTF-8). Chunks are rendered separately and spliced, so a file of any size is
written as a stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from emotions.constants import OUTPUT_SUFFIX
from emotions.files import inside, safe_name


class PartMissing(Exception):
    """A chunk's records were gone while the file was being written (the job ended)."""


def output_path(output_dir: Path, input_name: str) -> Path:
    """``<output dir>/<input file stem>.json``."""
    stem = Path(safe_name(input_name)).stem or "_"
    return inside(output_dir, stem + OUTPUT_SUFFIX)


def render(records: Iterable[list[Any]], labels: Iterable[str]) -> bytes:
    """One chunk's output records, one JSON object per line, ready to splice into the file."""
    return b",\n".join(
        orjson.dumps({"id": rid, "comment": text, "emotion": label})
        for (rid, text), label in zip(records, labels, strict=True)
    )


def json_array(parts: Iterable[bytes | None]) -> Iterator[bytes]:
    """The bytes of the output file from each chunk's rendered records, in chunk order.

    Raises :class:`PartMissing` at a missing (``None``) part: a partial file is never written.
    """
    yield b"[\n"
    first = True
    for part in parts:
        if part is None:
            raise PartMissing
        if part:
            if not first:
                yield b",\n"
            yield part
            first = False
    yield b"\n]\n" if not first else b"]\n"
