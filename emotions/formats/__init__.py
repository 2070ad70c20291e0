"""Input formats: turn one comment file into records, whichever tool wrote it.

Read as written by the tools people use:

- a JSON array of comment objects or strings (the original script's input);
- youtube-comment-downloader: JSON Lines (its default, often saved as ``.json``), its indented
  ``{"comments": [...]}`` and its CSV / semicolon CSV (UTF-8 with a BOM);
- YouTube Data API v3 ``commentThreads.list`` / ``comments.list`` responses (one page, an
  array of pages, or one page per line), each top-level comment followed by its replies.

The format is sniffed from the content (``detect``), so a misleading extension does not matter.
Ids are taken from the first of ``id``, ``comment_id``, ``commentId``, ``cid`` and kept exactly
as given; a record without one gets its 0-based position in the file, as a string. Error
messages name the file and the line, record (counted from 0) or JSON path that is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from emotions.constants import TEXT_BLOCK_RECORDS
from emotions.formats.csvread import csv_texts
from emotions.formats.delimited import csv_records
from emotions.formats.detect import Format, detect
from emotions.formats.json_document import document_records, document_texts
from emotions.formats.json_lines import json_lines_records, json_lines_texts
from emotions.formats.records import ID_FIELDS, LIMIT_SETTING, TEXT_FIELDS, Record, RecordMaker

__all__ = [
    "ID_FIELDS",
    "LIMIT_SETTING",
    "TEXT_FIELDS",
    "Format",
    "Record",
    "RecordMaker",
    "detect",
    "iter_records",
    "read_records",
    "read_texts",
]

_READERS = {
    Format.JSON_DOCUMENT: document_records,
    Format.JSON_LINES: json_lines_records,
    Format.CSV: csv_records,
}


def iter_records(path: Path, *, max_comment_chars: int = 1_000_000) -> Iterator[Record]:
    """Yield the file's comment records in file order. Raises InputError / InputTooLargeError.

    Lazy: nothing is read until the first record is asked for, and JSON Lines and CSV files are
    streamed, so records before a bad line may be yielded before the error is raised (the
    caller must then fail the whole file). Errors reading the file itself (missing, permission)
    are left as ``OSError``.
    """
    path = Path(path)
    fmt = detect(path)
    with path.open("rb") as stream:
        yield from read_records(stream, path.name, fmt, max_comment_chars=max_comment_chars)


def read_records(
    stream: BinaryIO,
    name: str,
    fmt: Format,
    *,
    max_comment_chars: int = 1_000_000,
    maker: RecordMaker | None = None,
) -> Iterator[Record]:
    """The records of an open binary ``stream`` in format ``fmt`` (see :func:`iter_records`);
    ``name`` is the file name error messages give. The stream is read forward only. A
    ``maker`` given by the caller tells where each record lies as it is made (its
    ``span_*`` attributes) and may start numbering elsewhere than 0."""
    yield from _READERS[fmt](stream, name, maker or RecordMaker(max_comment_chars))


def read_texts(
    stream: BinaryIO, name: str, fmt: Format, *, max_comment_chars: int = 1_000_000
) -> Iterator[list[str]]:
    """The comment texts of :func:`read_records`, in order, in lists (blocks), with its
    errors, for a caller that needs no ids (the producer's check): JSON Lines and JSON
    documents by a faster path (:mod:`~emotions.formats.texts`), CSV from its bytes
    (:mod:`~emotions.formats.csvread`: a seekable ``stream`` is read again from its start
    should a row need the full path)."""
    maker = RecordMaker(max_comment_chars)
    if fmt is Format.JSON_LINES:
        return json_lines_texts(stream, name, maker)
    if fmt is Format.JSON_DOCUMENT:
        return document_texts(stream, name, maker)
    if fmt is Format.CSV:
        return csv_texts(stream, name, maker)
    records = _READERS[fmt](stream, name, maker)
    return iter(lambda: [record.comment for record in islice(records, TEXT_BLOCK_RECORDS)], [])
