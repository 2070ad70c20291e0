"""Cutting a stream of records into chunks, the same way every time.

The producer cuts a file when it checks it (recording where each chunk lies, emotions.spans)
and sends each chunk's texts; the assembly pairs the file's records, in order, with each
chunk's stored labels, so the same content must always cut the same way. A chunk closes at
``size`` comments or once its texts reach ``max_bytes`` bytes of UTF-8, whichever comes first
(a lone longer comment still makes a chunk of one), so no message is huge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from emotions.formats import Record
from emotions.formats.records import utf8_length


def chunks(records: Iterable[Record], size: int, max_bytes: int) -> Iterator[list[Record]]:
    """Consecutive lists of at most ``size`` records and about ``max_bytes`` of text."""
    batch: list[Record] = []
    used = 0
    for record in records:
        cost = utf8_length(record.comment)
        if batch and (len(batch) >= size or used + cost > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(record)
        used += cost
    if batch:
        yield batch
