"""Cutting a stream of records into chunk messages without holding the file in memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from producer.formats import Record


def chunks(records: Iterable[Record], size: int) -> Iterator[list[list[Any]]]:
    """Consecutive ``[[id, comment], ...]`` lists of at most ``size`` records, in file order.

    Lists, not tuples: this is exactly the JSON the chunk task receives.
    """
    it = iter(records)
    while batch := [[r.id, r.comment] for r in islice(it, size)]:
        yield batch
