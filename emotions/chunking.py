"""Cutting a stream of records into chunks, the same way on both sides.

The producer sends each chunk's texts; the assembly reads the input file again and cuts it
the same way to pair each chunk's records with the labels stored under its index. A chunk
closes at ``size`` comments or once its texts reach ``max_bytes`` bytes of UTF-8, whichever
comes first (a lone longer comment still makes a chunk of one), so no message is huge.
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
