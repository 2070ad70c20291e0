"""Cutting a stream of comment texts into chunks, the same way every time.

The producer cuts a file's texts when it checks it (producer.spool) and sends each chunk; a
producer that resumes a job checks the file again and must cut it as before, and the assembly
pairs the file's records, in order, with each chunk's stored labels. A chunk closes at
``size`` comments or once its texts reach ``max_bytes`` bytes of UTF-8, whichever comes first
(a lone longer comment still makes a chunk of one), so no message is huge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def chunks(texts: Iterable[str], size: int, max_bytes: int) -> Iterator[list[str]]:
    """Consecutive lists of at most ``size`` texts and about ``max_bytes`` of UTF-8."""
    batch: list[str] = []
    used = 0
    for text in texts:
        # str.isascii is a flag check: ASCII costs no encoding (see records.utf8_length).
        cost = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if batch and (len(batch) >= size or used + cost > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(text)
        used += cost
    if batch:
        yield batch
