"""JSON Lines: youtube-comment-downloader's default output, one comment object per line.

Streamed line by line: such files reach a million comments, and only the current line and its
records are held at a time. Blank lines are skipped; a line may also hold a bare string, a Data
API thread or a whole API page (people append pages to one file).

A last line with no newline at its end that does not parse is a record cut short: the writer
(youtube-comment-downloader writes page by page, through a buffer) has not finished it yet, so
it is reported as incomplete. A bad line that does end in a newline is simply malformed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import orjson
from msgspec import UNSET

from emotions.constants import TEXT_BLOCK_BYTES
from emotions.errors import IncompleteInputError, InputError
from emotions.formats.detect import BOM, STILL_WRITING, not_utf8_error
from emotions.formats.json_document import API_KEYS, element_records
from emotions.formats.pages import texts_of_pages
from emotions.formats.records import (
    TEXT_FIELDS,
    At,
    InexactNumber,
    Record,
    RecordMaker,
    exact_loads,
)
from emotions.formats.texts import (
    DECODE_ERRORS,
    Undecided,
    decode_obj,
    element_texts,
    plain_texts,
)


def json_lines_records(stream: BinaryIO, name: str, maker: RecordMaker) -> Iterator[Record]:
    """Yield every comment of a JSON Lines stream in order, reading one line at a time.

    Records before a bad line are yielded before the error is raised: the caller fails the
    whole file, not just that line.
    """
    for number, line in enumerate(stream, start=1):
        if number == 1:
            line = line.removeprefix(BOM)
        yield from _line(line, number, name, maker)


def _line(line: bytes, number: int, name: str, maker: RecordMaker) -> list[Record]:
    """The records of line ``number`` (none for a blank one), or its error."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        if not line.strip():
            return []
        raise _line_error(name, number, line, e) from e
    if type(value) is dict and API_KEYS.isdisjoint(value):
        record = maker.plain(value)
        if record is not None:
            return [record]
    return line_records(line, value, maker, At(name).numbered("line", number))


def json_lines_texts(stream: BinaryIO, name: str, maker: RecordMaker) -> Iterator[list[str]]:
    """The texts of :func:`json_lines_records`, in order and in blocks, with its errors, for a
    check that needs no ids: about three times as fast.

    Lines are read a block at a time (:data:`TEXT_BLOCK_BYTES`) and decoded by msgspec into
    just the keys that decide a plain comment (:class:`~emotions.formats.texts.Head`); a block
    of plain comments within the length limit, nearly every block of a real file, costs no
    Python per line. A block of Data API pages is decoded into typed structs instead
    (:mod:`~emotions.formats.pages`), whichever of the two read the previous block tried first.
    Any other block is read line by line as before: a line msgspec leaves
    undecided (a Data API page, a number as text, a bad or blank line) takes the full path of
    :func:`json_lines_records`, which gives the same texts or the error.
    """
    limit, number = maker.max_comment_chars, 1
    readers = [plain_texts, texts_of_pages]
    while lines := stream.readlines(TEXT_BLOCK_BYTES):
        if number == 1:
            lines[0] = lines[0].removeprefix(BOM)
        for reader in readers:
            texts = reader(lines, limit)
            if texts is not None:
                if reader is not readers[0]:  # the file's blocks are likely all alike
                    readers.reverse()
                break
        yield texts if texts is not None else _line_texts(lines, number, name, maker)
        number += len(lines)


def _line_texts(lines: list[bytes], number: int, name: str, maker: RecordMaker) -> list[str]:
    """The texts of ``lines`` (the first is line ``number``), one line at a time."""
    limit, fields = maker.max_comment_chars, TEXT_FIELDS
    found: list[str] = []
    for at, line in enumerate(lines, start=number):
        try:
            obj = decode_obj(line)
            if obj.items is obj.kind is obj.snippet is UNSET:  # a plain comment: inline
                for field in fields:
                    text = getattr(obj, field)
                    if text is not UNSET:
                        break
                if type(text) is str and len(text) <= limit:
                    found.append(text)
                    continue
            found.extend(element_texts(obj, limit))
        except (*DECODE_ERRORS, Undecided):
            found.extend(record.comment for record in _line(line, at, name, maker))
    return found


def line_records(line: bytes, value: object, maker: RecordMaker, where: At) -> list[Record]:
    """The records of one parsed line; parsed again exactly if orjson may have lost digits.

    A line's records are made before any is handed on, so a line parsed twice gives each of
    its records once.
    """
    position = maker.position
    try:
        return list(element_records(value, maker, where))
    except InexactNumber:
        return maker.exactly(lambda: element_records(exact_loads(line), maker, where), position)


def _line_error(name: str, number: int, line: bytes, error: orjson.JSONDecodeError) -> InputError:
    """Why a line is not JSON, in the file's own line numbering.

    Only the last line can lack its newline; unparsable, it is a record still being written.
    """
    if not line.endswith(b"\n"):
        return IncompleteInputError(
            f"{name} line {number}: the last line is an unfinished record (no newline at its "
            f"end, and it is not valid JSON: {error.msg}); {STILL_WRITING}"
        )
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return not_utf8_error(name, line, bad, first_line=number)
    return InputError(f"{name} line {number}: invalid JSON ({error.msg} at column {error.colno})")
