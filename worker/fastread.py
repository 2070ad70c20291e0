"""The assembly's fast reading path: an input's records as blocks of columns (ids, texts).

The assembly re-reads every input it writes, and the format readers' full parse and
per-record objects cost most of that. Here JSON Lines are read in blocks of lines, each
decoded with msgspec into the few fields the readers look at (:mod:`worker.columns`); a JSON
document is split into its elements' bytes in one pass and read the same way, a block of
elements at a time; CSV is taken apart from its bytes, a block of rows at a time
(:mod:`emotions.formats.csvread`). Each block is taken apart in whole-column passes when it is the
common, uniform case.

A JSON Lines block that is not is handed to the reader itself (``read_records`` on the block's
own lines, numbered from the block's first record), so it gives the reader's records exactly.
Anything else this path does not recognise raises :class:`~emotions.errors.FallbackToReaders`,
and so does anything the reader would refuse: the caller then assembles the file the plain
way, through the readers from its first byte, which gives the readers' own errors with the
file's own line numbers.

msgspec skips the fields it is not asked for without building them, and so does not refuse a
few things orjson refuses there (bytes that are not UTF-8, a number beyond a double). That can
never change an output: the caller writes one only when the SHA-256 of the bytes read is the
job's, content the producer's readers accepted as a whole; any other content falls back to
the readers, whose verdict (and wording) then stands.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

import msgspec
from msgspec import UNSET, Raw

from emotions.constants import ASSEMBLY_BLOCK, ASSEMBLY_BLOCK_BYTES
from emotions.errors import FallbackToReaders, InputError
from emotions.formats import Format, RecordMaker, read_records
from emotions.formats.csvread import csv_columns
from emotions.formats.detect import BOM
from worker.columns import LINE_DECODER, Columns, Head, api_pages, comments, no_text


def columns(stream: BinaryIO, name: str, fmt: Format, limit: int) -> Iterator[Columns]:
    """The records of ``stream`` (format ``fmt``, ``limit`` characters per comment at most), in
    file order, as blocks of columns. Raises :class:`~emotions.errors.FallbackToReaders`, never
    an ``InputError``."""
    if fmt is Format.JSON_LINES:
        return _json_lines(stream, name, limit)
    if fmt is Format.CSV:
        return csv_columns(stream, limit)
    return _document(stream, limit)


_HEAD = msgspec.json.Decoder(list[Raw] | Head)


def _json_lines(stream: BinaryIO, name: str, limit: int) -> Iterator[Columns]:
    position = 0
    for number, lines in enumerate(iter(lambda: stream.readlines(ASSEMBLY_BLOCK_BYTES), [])):
        if number == 0:
            parsed = [lines[0].removeprefix(BOM), *lines[1:]]
        elif lines[0].startswith(BOM):
            raise FallbackToReaders  # only the file's first line may start with one (the reader's)
        else:
            parsed = lines
        try:
            block = comments(parsed, position, limit)
        except msgspec.MsgspecError:  # a blank line, a bad one, another shape: the reader's
            block = None
        if block is None:
            block = _lines_by_reader(lines, name, position, limit)
        position += len(block[0])
        yield block


def _lines_by_reader(lines: list[bytes], name: str, position: int, limit: int) -> Columns:
    """The JSON Lines reader's records of these lines (numbered from ``position``)."""
    maker = RecordMaker(limit)
    maker.position = position
    stream = io.BytesIO(b"".join(lines))
    try:
        records = list(read_records(stream, name, Format.JSON_LINES, maker=maker))
    except InputError as e:
        raise FallbackToReaders from e
    return [r[0] for r in records], [r[1] for r in records]


def _document(stream: BinaryIO, limit: int) -> Iterator[Columns]:
    """A whole document: an array of comments or API pages, ``{"comments": [...]}`` or one API
    page, in the readers' order of precedence; any other shape falls back. The document is
    first split into its elements' bytes (msgspec ``Raw``), then read a block at a time."""
    raw = stream.read()
    body = memoryview(raw)[len(BOM) if raw.startswith(BOM) else 0 :]
    try:
        document = _HEAD.decode(body)
        if isinstance(document, list):
            elements = document
        elif document.comments is not UNSET and no_text(document):
            elements = document.comments
        else:
            page = api_pages([LINE_DECODER.decode(body)], limit)
            if page is None:
                raise FallbackToReaders
            yield page
            return
        del raw, body, document
        position = 0
        for start in range(0, len(elements), ASSEMBLY_BLOCK):
            block = comments(elements[start : start + ASSEMBLY_BLOCK], position, limit)
            if block is None:
                raise FallbackToReaders
            position += len(block[0])
            yield block
    except msgspec.MsgspecError as e:
        raise FallbackToReaders from e
