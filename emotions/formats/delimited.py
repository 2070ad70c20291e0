"""CSV with a header row: youtube-comment-downloader's ``--format csv`` / ``scsv`` and spreadsheet
exports (UTF-8, often with a BOM; comma, semicolon or tab delimited; quoted fields may hold
delimiters, doubled quotes and line breaks).

Streamed row by row with the ``csv`` module, never read whole. Every cell is a string, so ids
stay strings exactly as written; an empty id cell means "no id" (the position is used).

Two endings mean a row is still being written, not malformed, and are reported as incomplete:
a quoted field still open at the end of the data, and a last row with fewer fields than the
header and no line break after it.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Final, NamedTuple

from emotions.errors import IncompleteInputError, InputError, InputTooLargeError
from emotions.formats.detect import STILL_WRITING, not_utf8_error
from emotions.formats.records import (
    ID_FIELDS,
    LIMIT_SETTING,
    TEXT_FIELDS,
    At,
    Record,
    RecordMaker,
    list_names,
)

DELIMITERS: Final = (",", ";", "\t")
_QUOTED: Final = re.compile(r'"[^"]*"')
_LINE_BREAKS: Final = ("\n", "\r")
# What the csv module says (with strict=True) when the data ends inside a quoted field.
_OPEN_QUOTE_AT_END: Final = "unexpected end of data"


class _Lines:
    """A text stream's lines, remembering whether the latest one ended with a line break.

    Only the file's last line can lack one, so a row that comes up short on such a line is the
    writer's unfinished last row.
    """

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.unterminated = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.unterminated = not line.endswith(_LINE_BREAKS)
        return line


class Layout(NamedTuple):
    """What a CSV header said: the delimiter, the row width, the text and id columns."""

    delimiter: str
    width: int
    text: int
    id: int | None


def sniff_delimiter(header_line: str) -> str:
    """The delimiter used most in the header line (outside quotes); a comma on a tie or none."""
    bare = _QUOTED.sub("", header_line)
    return max(DELIMITERS, key=bare.count) if any(d in bare for d in DELIMITERS) else ","


def find_column(columns: list[str], names: Iterable[str]) -> int | None:
    """Index of the first of ``names`` among ``columns``; exact match first, then any case."""
    names = tuple(names)
    for name in names:
        if name in columns:
            return columns.index(name)
    folded = [column.casefold() for column in columns]
    for name in names:
        if name.casefold() in folded:
            return folded.index(name.casefold())
    return None


def _allow_long_fields(max_comment_chars: int) -> None:
    """Let the csv module read comments up to the limit (its default stops at 131,072 chars).

    The limit is process-wide, so it is only ever raised, never lowered.
    """
    if csv.field_size_limit() <= max_comment_chars:
        csv.field_size_limit(max_comment_chars + 1)


def _first_bad_line(stream: BinaryIO, name: str) -> InputError:
    """The InputError for a stream that failed to decode, naming its first non-UTF-8 line
    (read again from the start where the stream can seek)."""
    if stream.seekable():
        stream.seek(0)
        for number, line in enumerate(stream, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return not_utf8_error(name, line, e, first_line=number)
    return InputError(f"{name}: not UTF-8 text: is this a comment file?")


def csv_records(stream: BinaryIO, name: str, maker: RecordMaker) -> Iterator[Record]:
    """Yield every comment of a CSV stream in order; the header names the id and text columns.

    The text layer is detached, not closed, at the end: the caller owns the stream (and may
    read on, to hash the rest of the file).
    """
    _allow_long_fields(maker.max_comment_chars)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _rows(name, text, maker)
    except UnicodeDecodeError as e:
        raise _first_bad_line(stream, name) from e
    finally:
        text.detach()


def _first_line(stream: Iterator[str]) -> tuple[int, str]:
    """The header line, and how many blank lines precede it."""
    skipped = 0
    first = next(stream, "")
    while first and not first.strip():
        skipped, first = skipped + 1, next(stream, "")
    return skipped, first


def _rows(name: str, stream: Iterator[str], maker: RecordMaker) -> Iterator[Record]:
    """The records of an open CSV text stream (see ``csv_records``)."""
    skipped, first = _first_line(stream)
    delimiter = sniff_delimiter(first)
    lines = _Lines(itertools.chain([first], stream))
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    end = 0
    try:
        columns = [column.strip() for column in next(reader, [])]
        text_index = find_column(columns, TEXT_FIELDS)
        if text_index is None:
            message = (
                f"{name}: no text column: expected one of {', '.join(TEXT_FIELDS)}; found "
                f"columns: {list_names(columns)} (read with delimiter {delimiter!r})"
            )
            if lines.unterminated:  # the header itself is not finished
                raise IncompleteInputError(f"{message}; no line break after it: {STILL_WRITING}")
            raise InputError(message)
        id_index = find_column(columns, ID_FIELDS)
        width, end, limit = len(columns), reader.line_num, maker.max_comment_chars
        for row in reader:
            start, end = skipped + end + 1, reader.line_num
            if not row or (width > 1 and len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) == width and len(text := row[text_index]) <= limit:  # the common case
                id_value = row[id_index] if id_index is not None else ""
                yield maker.known(id_value if id_value.strip() else None, text)
                continue
            if len(row) < width and lines.unterminated:
                raise IncompleteInputError(
                    f"{name} line {start}: the last row has {len(row)} of the header's {width} "
                    f"fields and no line break after it: an unfinished row; {STILL_WRITING}"
                )
            if len(row) < width or any(cell.strip() for cell in row[width:]):
                raise InputError(
                    f"{name} line {start}: {len(row)} fields, but the header has {width}; does a "
                    f"field holding {delimiter!r} or a line break lack its double quotes?"
                )
            id_value = row[id_index] if id_index is not None else ""
            yield maker.make(
                id_value if id_value.strip() else None,
                row[text_index],
                At(name, "line", start),
                columns[text_index],
            )
    except csv.Error as e:
        line = skipped + reader.line_num
        if str(e) == _OPEN_QUOTE_AT_END:
            raise IncompleteInputError(
                f"{name} line {skipped + end + 1}: a quoted field starting in this row is still "
                f"open at the end of the file: {STILL_WRITING} (or a double quote in that row "
                "lacks its closing quote)"
            ) from e
        if "field larger than field limit" in str(e):
            raise InputTooLargeError(
                f"{name} line {line}: a field is longer than {maker.max_comment_chars:,} "
                f"characters, the limit for one comment ({LIMIT_SETTING}); or a quote is never "
                "closed"
            ) from e
        raise InputError(
            f"{name} line {line}: malformed CSV ({e}); check the double quotes on that line"
        ) from e
