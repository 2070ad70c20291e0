"""The fast reading of CSV: a file's records as blocks of columns (ids, texts), for the
assembly, and its texts alone, for the producer's check.

A megabyte of rows at a time is taken apart from its bytes (:mod:`~emotions.formats.fastcsv`,
where numpy is installed: the base install brings it). From the
first block that cannot be vouched for that way (a quoted field holding a line break at the
block's end, old Mac line ends, blank lines...), the rest of the file is read with the very
``csv.reader`` the format reader uses, a block of rows at a time, from the start of that block
(a block always starts at the start of a row). Anything the reader would refuse, or read
otherwise than as plain rows of the header's width (blank lines, rows with extra empty cells),
raises :class:`~emotions.errors.FallbackToReaders`: the caller then reads the whole file
through the reader itself.
"""

from __future__ import annotations

import csv
import functools
import importlib
import io
from collections.abc import Callable, Iterator
from itertools import chain, islice
from operator import itemgetter
from typing import Any, BinaryIO, Final

from emotions.constants import ASSEMBLY_BLOCK, CSV_BLOCK_BYTES, TEXT_BLOCK_RECORDS
from emotions.errors import FallbackToReaders
from emotions.formats.delimited import (
    Layout,
    _allow_long_fields,
    csv_records,
    find_column,
    sniff_delimiter,
)
from emotions.formats.detect import BOM
from emotions.formats.records import ID_FIELDS, TEXT_FIELDS, Columns, RecordMaker

_LAZY: Final = object()
# emotions.formats.fastcsv once a CSV is first read (numpy's import, about 50 ms, is paid only
# by a process that reads CSV), or None without numpy: csv.reader then reads every row.
fastcsv: Any = _LAZY


def _bytes_path() -> Any:
    """The bytes path's module, imported on first use, or None where numpy is missing."""
    global fastcsv
    if fastcsv is _LAZY:
        try:
            fastcsv = importlib.import_module("emotions.formats.fastcsv")
        except ImportError:
            fastcsv = None
    return fastcsv


RowReader = Callable[[Iterator[str], int, int], Iterator[Columns]]


def csv_texts(stream: BinaryIO, name: str, maker: RecordMaker) -> Iterator[list[str]]:
    """The texts of :func:`~emotions.formats.delimited.csv_records`, in order and in blocks,
    with its errors, for a check that needs no ids: :func:`csv_columns` without the ids, at
    about half the cost of the records.

    Where :func:`csv_columns` gives up (anything the reader would refuse or read otherwise
    than plain rows), a seekable stream is read again from its start by ``csv_records``, which
    gives the texts not yet yielded, or the error: this path never words an error itself. A
    stream that cannot seek is read by ``csv_records`` from the start. Like the assembly, the
    check then takes a file with bytes that are not UTF-8 in a column it does not decode (see
    :mod:`~emotions.formats.fastcsv`).
    """
    made = 0
    if stream.seekable():
        try:
            for _, texts in csv_columns(stream, maker.max_comment_chars):
                made += len(texts)
                yield texts
            return
        except FallbackToReaders:
            stream.seek(0)
    records = islice(csv_records(stream, name, maker), made, None)
    yield from iter(lambda: [r.comment for r in islice(records, TEXT_BLOCK_RECORDS)], [])


def csv_columns(stream: BinaryIO, limit: int) -> Iterator[Columns]:
    """The records of a CSV ``stream`` (``limit`` characters per comment at most), in file
    order, as blocks of columns. The caller owns the stream and reads (hashes) what is left."""
    _allow_long_fields(limit)
    data = stream.read(CSV_BLOCK_BYTES)
    body = data.removeprefix(BOM)
    try:
        layout, header = _header(body)
    except (ValueError, UnicodeDecodeError, csv.Error):  # not one plain line: the reader's way
        yield from _by_reader(_Prefixed(data, stream), "utf-8-sig", _file_rows, limit, 0)
        return
    pending, position = body[header:], 0
    while True:
        more = stream.read(CSV_BLOCK_BYTES)
        block = pending + more
        if not block:
            return
        try:
            cells = _bytes_path()
            found = None if cells is None else cells.cells(block, layout, final=not more)
        except UnicodeDecodeError as e:  # in an id or a text: the reader refuses the file
            raise FallbackToReaders from e
        if found is None:
            rows = functools.partial(_body_rows, layout)
            yield from _by_reader(_Prefixed(block, stream), "utf-8", rows, limit, position)
            return
        texts = found.texts
        if max(map(len, texts)) > limit:
            raise FallbackToReaders
        yield _ids(found.ids, position, len(texts)), texts
        position += len(texts)
        pending = block[found.used :]


def _header(data: bytes) -> tuple[Layout, int]:
    """The layout that the header line starting ``data`` gives, and that line's length in
    bytes. ``ValueError`` (or a decoding or ``csv`` error) where it is not one plain line
    ending with a line feed (which the reader would read the same way)."""
    line = data[: data.index(b"\n") + 1]
    if b"\r" in line[:-2]:
        raise ValueError("a carriage return inside the header line")
    first = line.decode("utf-8")
    (row,) = csv.reader([first], delimiter=sniff_delimiter(first), strict=True)
    return _layout(first, row), len(line)


def _layout(first: str, row: list[str]) -> Layout:
    """The layout of the header row read from the line ``first`` (the file's first line)."""
    if not first.strip():
        raise FallbackToReaders  # blank lines before the header
    columns = [column.strip() for column in row]
    text_index = find_column(columns, TEXT_FIELDS)
    if text_index is None:
        raise FallbackToReaders
    id_index = find_column(columns, ID_FIELDS)
    return Layout(sniff_delimiter(first), len(columns), text_index, id_index)


def _ids(id_cells: list[str] | None, position: int, count: int) -> list[Any]:
    """The ids of ``count`` records, the first at ``position``: each id cell as written, or
    the record's position where there is no id column or the cell is blank."""
    if id_cells is None:
        return list(map(str, range(position, position + count)))
    if all(map(str.strip, id_cells)):
        return id_cells
    return [c if c.strip() else str(position + k) for k, c in enumerate(id_cells)]


def _by_reader(
    raw: io.RawIOBase, encoding: str, rows: RowReader, limit: int, position: int
) -> Iterator[Columns]:
    """``rows`` of the text of ``raw`` (the text layer is detached, not closed, at the end)."""
    text = io.TextIOWrapper(io.BufferedReader(raw), encoding=encoding, newline="")
    try:
        yield from rows(text, limit, position)
    except (UnicodeDecodeError, csv.Error) as e:
        raise FallbackToReaders from e
    finally:
        text.detach()


def _file_rows(text: Iterator[str], limit: int, position: int) -> Iterator[Columns]:
    """A whole file's rows, read after its header line."""
    first = next(text, "")
    reader = csv.reader(chain([first], text), delimiter=sniff_delimiter(first), strict=True)
    layout = _layout(first, next(reader, []))
    yield from _row_blocks(reader, layout, limit, position)


def _body_rows(layout: Layout, text: Iterator[str], limit: int, position: int) -> Iterator[Columns]:
    """The rows of a text that starts at the start of a row after the header."""
    reader = csv.reader(text, delimiter=layout.delimiter, strict=True)
    yield from _row_blocks(reader, layout, limit, position)


def _row_blocks(
    reader: Iterator[list[str]], layout: Layout, limit: int, position: int
) -> Iterator[Columns]:
    """Blocks of rows that all have the header's width and texts within the limit; anything
    else (blank lines, short or long rows) falls back."""
    for rows in iter(lambda: list(islice(reader, ASSEMBLY_BLOCK)), []):
        if set(map(len, rows)) != {layout.width}:
            raise FallbackToReaders
        texts = list(map(itemgetter(layout.text), rows))
        if max(map(len, texts)) > limit:
            raise FallbackToReaders
        id_cells = None if layout.id is None else list(map(itemgetter(layout.id), rows))
        yield _ids(id_cells, position, len(rows)), texts
        position += len(rows)


class _Prefixed(io.RawIOBase):
    """``prefix``, then the rest of ``stream`` (left open: the caller reads on, to hash it)."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._stream.readinto(buffer)  # type: ignore[attr-defined]
