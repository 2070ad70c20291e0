"""CSV rows taken apart from their bytes, a block at a time, for the fast paths of the
producer's check and the assembly.

Python's ``csv`` module (behind a text layer that decodes every byte) builds every field of
every row through a per-character state machine; the assembly needs two columns, ids and texts.
Here the structure of a whole block is found with numpy, a pass per kind of byte (double
quotes, line feeds, delimiters, carriage returns), and only the two needed fields of each row
become Python objects.

Quoting is decided by parity: a byte lies inside a quoted field when an odd number of double
quotes precede it in the block (a block always starts at the start of a row). That holds only
for the quoting the ``csv`` module writes and reads the same way, so a block is read here only
when every quote is one of those: an opening quote at the start of a field (or the second of a
doubled quote), a closing one at its end (or the first of a doubled quote). A block with
anything else, a quote inside an unquoted field, a carriage return that does not end a row, a
blank row, a row whose width is not the header's, a NUL byte, is answered ``None``: the caller
reads it with the ``csv`` module. Rows, delimiters and quotes found this way are then exactly
the ``csv`` module's (``strict``, the default dialect with the sniffed delimiter).

Only the two needed columns are decoded. A byte sequence that is not UTF-8 in another field is
not noticed here (the ``csv`` module would refuse it). As with the JSON fields msgspec skips, a
file holding one from the start is checked and assembled (its ids and texts are valid); one
that appears after the file was queued makes the digest differ from the job's, and the readers
judge the file.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from emotions.formats.delimited import Layout

_QUOTE: Final = ord('"')
_LF: Final = ord("\n")
_CR: Final = ord("\r")
_NUL: Final = b"\0"
Positions = npt.NDArray[np.intp]
Span = tuple[Positions, Positions]  # where the fields of a column start and stop, row by row


class Cells(NamedTuple):
    """A block's rows: the id cells (``None`` without an id column), the texts, and how many
    bytes of the block they took (the rest, an unfinished row, starts the next block)."""

    ids: list[str] | None
    texts: list[str]
    used: int


def cells(data: bytes, layout: Layout, final: bool) -> Cells | None:
    """The complete rows at the start of ``data`` (all of it if ``final``: the end of the file
    ends the last row), or ``None`` when they are not certain to be the ``csv`` module's."""
    if _NUL in data:
        return None  # the mark that cuts the fields out (below)
    padded = np.frombuffer(data + b"\n", dtype=np.uint8)  # a byte after any field
    size = len(data)
    quoted = _Quoted(np.flatnonzero(padded[:size] == _QUOTE), size)
    ends = quoted.outside(np.flatnonzero(padded[:size] == _LF))
    if final and (not len(ends) or ends[-1] != size - 1):
        if data.endswith(b"\r"):
            return None  # the csv module ends a row there; not worth matching
        ends = np.append(ends, size)  # the last row, without a line break
    if not len(ends):
        return None
    used = min(int(ends[-1]) + 1, size)
    region = padded[:used]
    quoted = _Quoted(quoted.quotes[: np.searchsorted(quoted.quotes, used)], used)
    if len(quoted.quotes) % 2 or not quoted.plain(padded, ord(layout.delimiter)):
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    stops = _row_stops(region, ends, quoted)
    if stops is None or (layout.width == 1 and np.any(stops <= starts)):
        return None  # a blank row (the csv module gives none), or a stray carriage return
    delimiters = quoted.outside(np.flatnonzero(region == ord(layout.delimiter)))
    inner = layout.width - 1
    if not np.array_equal(np.searchsorted(delimiters, ends), np.arange(1, len(ends) + 1) * inner):
        return None  # a row whose width is not the header's
    bounds: Positions = delimiters.reshape(len(ends), inner)
    wanted = sorted({layout.text} if layout.id is None else {layout.text, layout.id})
    spans = [
        (
            starts if index == 0 else bounds[:, index - 1] + 1,
            stops if index == inner else bounds[:, index],
        )
        for index in wanted
    ]
    fields = dict(zip(wanted, _cut(data, padded, wanted, spans), strict=True))
    return Cells(None if layout.id is None else fields[layout.id], fields[layout.text], used)


class _Quoted:
    """The double quotes of a block, paired in order: each pair opens and closes a quoted
    field (a doubled quote inside one is a close and an open); an odd last one is still open
    at ``size``."""

    def __init__(self, quotes: Positions, size: int) -> None:
        self.quotes = quotes
        self.opens = quotes[0::2]
        self.closes = quotes[1::2] if len(quotes) % 2 == 0 else np.append(quotes[1::2], size)

    def outside(self, positions: Positions) -> Positions:
        """The ``positions`` (sorted, of bytes other than quotes) outside quoted fields."""
        if not len(self.opens):
            return positions
        count = len(positions) + 1
        entered = np.bincount(np.searchsorted(positions, self.opens), minlength=count)
        left = np.bincount(np.searchsorted(positions, self.closes), minlength=count)
        return positions[np.cumsum(entered - left)[:-1] == 0]

    def plain(self, padded: npt.NDArray[np.uint8], delimiter: int) -> bool:
        """Every quote opens a field (after a delimiter, a line feed or at the start), closes
        one (before a delimiter, a line break or the end), or is one of a doubled pair."""
        opens, closes = self.opens, self.closes
        if not len(opens):
            return True
        doubled = closes[:-1] + 1 == opens[1:]
        before = padded[opens - 1]
        after = padded[closes + 1]
        open_ok = (before == delimiter) | (before == _LF)
        open_ok[0] |= opens[0] == 0
        open_ok[1:] |= doubled
        close_ok = (after == delimiter) | (after == _LF) | (after == _CR)
        close_ok[:-1] |= doubled
        return bool(open_ok.all() and close_ok.all())


def _row_stops(region: npt.NDArray[np.uint8], ends: Positions, quoted: _Quoted) -> Positions | None:
    """Where each row's last field stops: before a carriage return ending the row, if any.
    ``None`` if a carriage return outside quotes does anything else (ends a row on its own)."""
    has_cr = region[np.maximum(ends - 1, 0)] == _CR
    rows_with_cr = int(np.count_nonzero(has_cr))
    all_crs = region == _CR
    if np.count_nonzero(all_crs) != rows_with_cr and (  # others: all inside quotes?
        len(quoted.outside(np.flatnonzero(all_crs))) != rows_with_cr
    ):
        return None
    return ends - has_cr


def _cut(
    data: bytes, padded: npt.NDArray[np.uint8], columns: list[int], spans: list[Span]
) -> list[list[str]]:
    """The fields of each of ``columns`` (in order), ``data[first:last]`` for each row of its
    span, as text, without their quotes.

    They are cut out of a copy of ``data`` by one ``split``: a NUL replaces the byte just
    before and just after each field (a delimiter or a line break, one NUL where two wanted
    fields meet), so that every row gives its fields at the same places among the pieces.
    """
    marks: list[Positions] = []
    places = []  # where each column's first mark is among a row's marks
    for k, (column, (first, last)) in enumerate(zip(columns, spans, strict=True)):
        if k == 0 or columns[k - 1] != column - 1:
            marks.append(first - 1)
        places.append(len(marks) - 1)
        marks.append(last)
    rows = np.stack(marks, axis=1)
    flat, period = rows.ravel(), rows.shape[1]
    if not np.all(flat[1:] > flat[:-1]) and np.array_equal(rows[1:, 0], rows[:-1, -1]):
        flat, period = np.concatenate((rows[:1, 0], rows[:, 1:].ravel())), period - 1
    if np.all(flat[1:] > flat[:-1]):  # a row ending where the next starts: marked once
        cut = np.empty(len(padded) + 1, dtype=np.uint8)  # a byte before the data, for -1
        cut[0] = _LF
        cut[1:] = padded
        cut[flat + 1] = 0
        pieces = cut.tobytes().split(_NUL)
        count = len(rows)
        fields = [pieces[1 + place :: period][:count] for place in places]
    else:  # rows ending some with a carriage return, some without
        fields = [list(map(data.__getitem__, map(slice, *span))) for span in spans]
    return [_unquoted(padded, span[0], cells) for span, cells in zip(spans, fields, strict=True)]


def _unquoted(padded: npt.NDArray[np.uint8], first: Positions, cells: list[bytes]) -> list[str]:
    """``cells`` as text, each quoted one without its quotes, a doubled quote written once."""
    text = list(map(bytes.decode, cells))
    for k in np.flatnonzero(padded[first] == _QUOTE).tolist():
        text[k] = text[k][1:-1].replace('""', '"')
    return text
