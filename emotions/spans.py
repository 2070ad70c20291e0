"""Where each chunk of a file lies, recorded while the file is checked, so that chunk ``k`` can
be read again on its own.

The producer reads a file twice: once to check every record and count the chunks, once to
send them. Reading the second time from the start means a resumed or healed job re-parses
everything before the chunk it wants, and a sender that took a chunk from a half-consumed
iterator cannot take it again if sending failed. With spans, chunk ``k`` is a seek and a parse
of that chunk's bytes only, whatever was sent or failed before.

- JSON Lines: a chunk is the lines from the one holding its first record to the one holding its
  last; ``skip`` records of the first line belong to the chunk before (an API page per line
  holds a hundred threads, so chunk boundaries fall inside lines).
- CSV: a chunk is whole rows (quoted line breaks included); the header is read with it.
- A JSON document has no byte spans (``start == -1``): orjson parses whole documents only, so
  a chunk of one is cut from a parse of the whole document.

The cut is :func:`emotions.chunking.chunks`, the same the assembly relies on. A file that
changed since it was scanned gives other records: :func:`chunk_records` then raises
:class:`~emotions.errors.InputError` if the count differs (the digest check still decides).
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from emotions.chunking import chunks
from emotions.errors import InputError
from emotions.formats import Format, Record, RecordMaker, detect, read_records

NO_SPAN = -1


@dataclass(frozen=True, slots=True)
class Span:
    """Chunk ``first .. first + count`` (record indexes in the file), found in bytes
    ``[start, end)`` after ``skip`` records made from those bytes first."""

    first: int
    count: int
    start: int
    end: int
    skip: int


@dataclass(frozen=True, slots=True)
class Layout:
    """A file's chunks: its format, the bytes every chunk is read with (a CSV header), and
    each chunk's span."""

    fmt: Format
    prefix: int
    spans: tuple[Span, ...]

    @property
    def records(self) -> int:
        return sum(span.count for span in self.spans)

    @property
    def sliced(self) -> bool:
        """Whether chunks are read from their own bytes (not cut from a whole document)."""
        return bool(self.spans) and self.spans[0].start != NO_SPAN


def scan(
    path: Path,
    size: int,
    max_bytes: int,
    *,
    max_comment_chars: int,
    on_chunk: Callable[[], object] | None = None,
) -> Layout:
    """Check every record of ``path`` (raising what :func:`~emotions.formats.iter_records`
    raises) and cut it into chunks of ``size`` records / ``max_bytes`` bytes of text.

    ``on_chunk`` is called after each chunk: a big file's check takes seconds, and the caller
    keeps feeding its other files meanwhile."""
    fmt = detect(path)
    maker = RecordMaker(max_comment_chars)
    marks: deque[tuple[int, int, int]] = deque()  # per record not yet in a chunk: start, end, skip

    def marked(records: Iterator[Record]) -> Iterator[Record]:
        last, within = NO_SPAN - 1, 0
        for record in records:
            start = maker.span_start
            within = within + 1 if start == last else 0
            last = start
            marks.append((start, maker.span_end, within))
            yield record

    spans: list[Span] = []
    first = 0
    with path.open("rb") as stream:
        records = read_records(stream, path.name, fmt, maker=maker)
        for chunk in chunks(marked(records), size, max_bytes):
            n = len(chunk)
            start, _, skip = marks[0]
            end = marks[n - 1][1]
            for _ in range(n):
                marks.popleft()
            spans.append(Span(first, n, start, end, skip))
            first += n
            if on_chunk is not None:
                on_chunk()
    return Layout(fmt, maker.prefix_end, tuple(spans))


def chunk_records(
    path: Path,
    layout: Layout,
    index: int,
    *,
    max_comment_chars: int,
    stream: BinaryIO | None = None,
) -> list[Record]:
    """Chunk ``index`` of ``path`` as :func:`scan` cut it, reading only its bytes (and the
    header) where the format allows. Raises InputError if the file no longer has it.

    ``stream``: the file, already open (the caller keeps it open across chunks, so a file
    renamed while it is fed is still read, and read as the content it was checked as)."""
    if stream is None:
        with path.open("rb") as opened:
            return chunk_records(
                path, layout, index, max_comment_chars=max_comment_chars, stream=opened
            )
    span = layout.spans[index]
    maker = RecordMaker(max_comment_chars)
    if span.start == NO_SPAN:
        stream.seek(0)
        records = read_records(stream, path.name, layout.fmt, maker=maker)
        found = list(islice(records, span.first, span.first + span.count))
    else:
        stream.seek(0)
        head = stream.read(layout.prefix) if layout.prefix else b""
        stream.seek(span.start)
        body = stream.read(span.end - span.start)
        maker.position = span.first - span.skip
        part = io.BufferedReader(io.BytesIO(head + body))
        records = read_records(part, path.name, layout.fmt, maker=maker)
        found = list(islice(records, span.skip, span.skip + span.count))
    if len(found) != span.count:
        raise InputError(
            f"{path.name}: chunk {index} no longer has its {span.count} records: the file "
            "changed since it was checked"
        )
    return found
