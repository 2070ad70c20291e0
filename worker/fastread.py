"""The assembly's fast reading path: an input's records as blocks of columns (ids, texts).

The assembly re-reads every input it writes, and the format readers' per-record objects and
calls cost more than the parse itself. Here each format is read in blocks (lines, CSV rows or
array elements), parsed exactly as its reader parses it (the same ``orjson.loads`` of each line,
of the whole document; the same ``csv.reader``), and each block is taken apart by
:mod:`worker.columns` when it is the common, uniform case.

A block that is not is handed to the readers themselves (``read_records`` on the block's own
lines, ``element_records`` on its elements), with the position of its first record, so it
gives their records exactly. Anything the readers would refuse, and any shape this path does
not recognise, raises :class:`Fallback`: the caller then assembles the file the plain way,
through the readers from its first byte, which gives the readers' own error with the file's own
line numbers. A fast path can therefore only ever be faster, never different.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import chain, islice
from operator import itemgetter
from typing import Any, BinaryIO

import orjson

from emotions.constants import ASSEMBLY_BLOCK
from emotions.errors import InputError
from emotions.formats import TEXT_FIELDS, Format, RecordMaker, read_records
from emotions.formats.delimited import _allow_long_fields, find_column, sniff_delimiter
from emotions.formats.detect import BOM
from emotions.formats.json_document import element_records, value_records
from emotions.formats.records import ID_FIELDS, At, InexactNumber, Record, first_key
from worker.columns import Columns, api_pages, plain_objects


class Fallback(Exception):
    """This path cannot vouch for the input: assemble it through the readers instead."""


def columns(stream: BinaryIO, name: str, fmt: Format, limit: int) -> Iterator[Columns]:
    """The records of ``stream`` (format ``fmt``, ``limit`` characters per comment at most), in
    file order, as blocks of columns. Raises :class:`Fallback`, never an ``InputError``."""
    if fmt is Format.JSON_LINES:
        return _json_lines(stream, name, limit)
    if fmt is Format.CSV:
        return _csv(stream, name, limit)
    return _document(stream, name, limit)


def _split(records: list[Record]) -> Columns:
    return [r[0] for r in records], [r[1] for r in records]


def _maker(position: int, limit: int) -> RecordMaker:
    maker = RecordMaker(limit)
    maker.position = position
    return maker


def _json_lines(stream: BinaryIO, name: str, limit: int) -> Iterator[Columns]:
    position = 0
    loads = orjson.loads
    for number, lines in enumerate(iter(lambda: list(islice(stream, ASSEMBLY_BLOCK)), [])):
        if number == 0:
            parsed = [lines[0].removeprefix(BOM), *lines[1:]]
        elif lines[0].startswith(BOM):
            raise Fallback  # only the file's first line may start with one; read as the reader
        else:
            parsed = lines
        try:
            values = list(map(loads, parsed))
        except orjson.JSONDecodeError:  # a blank line, or a bad one: the reader says which
            block = None
        else:
            block = plain_objects(values, position, limit) or api_pages(values, limit)
        if block is None:
            block = _lines_by_reader(lines, name, position, limit)
        position += len(block[0])
        yield block


def _lines_by_reader(lines: list[bytes], name: str, position: int, limit: int) -> Columns:
    """The JSON Lines reader's records of these lines (numbered from ``position``)."""
    stream = io.BytesIO(b"".join(lines))
    maker = _maker(position, limit)
    try:
        return _split(list(read_records(stream, name, Format.JSON_LINES, maker=maker)))
    except InputError as e:
        raise Fallback from e


def _document(stream: BinaryIO, name: str, limit: int) -> Iterator[Columns]:
    raw = stream.read()
    try:
        document = orjson.loads(memoryview(raw)[len(BOM) if raw.startswith(BOM) else 0 :])
    except orjson.JSONDecodeError as e:
        raise Fallback from e
    del raw
    if type(document) is dict:
        elements = document.get("comments")
        if not isinstance(elements, list) or first_key(document, TEXT_FIELDS) is not None:
            page = api_pages([document], limit)
            yield page or _by_reader(value_records, document, name, 0, limit)
            return
    elif type(document) is list:
        elements = document
    else:
        raise Fallback
    position = 0
    for start in range(0, len(elements), ASSEMBLY_BLOCK):
        values = elements[start : start + ASSEMBLY_BLOCK]
        block = plain_objects(values, position, limit) or api_pages(values, limit)
        if block is None:
            block = _by_reader(_each_element, values, name, position, limit)
        position += len(block[0])
        yield block


def _each_element(values: list[Any], maker: RecordMaker, where: At) -> Iterator[Record]:
    for value in values:
        yield from element_records(value, maker, where)


def _by_reader(read: Any, value: Any, name: str, position: int, limit: int) -> Columns:
    """The document reader's records of ``value`` (numbered from ``position``): ``read`` is
    ``value_records`` for a whole document, :func:`_each_element` for array elements."""
    try:
        return _split(list(read(value, _maker(position, limit), At(name))))
    except (InputError, InexactNumber) as e:  # an inexact number: the reader parses it again
        raise Fallback from e


def _csv(stream: BinaryIO, name: str, limit: int) -> Iterator[Columns]:
    _allow_long_fields(limit)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _rows(text, limit)
    except (UnicodeDecodeError, csv.Error) as e:
        raise Fallback from e
    finally:
        text.detach()  # the caller owns the stream (and hashes the rest of it)


def _rows(text: io.TextIOWrapper, limit: int) -> Iterator[Columns]:
    """Blocks of rows that all have the header's width and texts within the limit; anything
    else (blank lines, short or long rows, a header without a text column) falls back."""
    first = next(text, "")
    if not first.strip():
        raise Fallback  # empty, or blank lines before the header
    delimiter = sniff_delimiter(first)
    reader = csv.reader(chain([first], text), delimiter=delimiter, strict=True)
    columns = [column.strip() for column in next(reader, [])]
    text_index = find_column(columns, TEXT_FIELDS)
    id_index = find_column(columns, ID_FIELDS)
    if text_index is None:
        raise Fallback
    width, position = len(columns), 0
    for rows in iter(lambda: list(islice(reader, ASSEMBLY_BLOCK)), []):
        if set(map(len, rows)) != {width}:
            raise Fallback
        texts = list(map(itemgetter(text_index), rows))
        if max(map(len, texts)) > limit:
            raise Fallback
        if id_index is None:
            ids: list[Any] = list(map(str, range(position, position + len(rows))))
        else:
            ids = list(map(itemgetter(id_index), rows))
            if not all(map(str.strip, ids)):  # a blank id cell: that record's position
                ids = [c if c.strip() else str(position + k) for k, c in enumerate(ids)]
        position += len(rows)
        yield ids, texts
