"""Cutting a stream of comment texts into chunks, the same way every time.

The producer cuts a file's texts when it checks it (producer.spool) and sends each chunk; a
producer that resumes a job checks the file again and must cut it as before, and the assembly
pairs the file's records, in order, with each chunk's stored labels. A chunk closes at
``size`` comments or once its texts reach ``max_bytes`` bytes of UTF-8, whichever comes first
(a lone longer comment still makes a chunk of one), so no message is huge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from emotions.formats.records import utf8_length


def chunks(texts: Iterable[str], size: int, max_bytes: int) -> Iterator[list[str]]:
    """Consecutive lists of at most ``size`` texts and about ``max_bytes`` of UTF-8.

    A character is at most 4 bytes of UTF-8, so while 4 x the characters of a chunk stay
    within ``max_bytes`` no text needs encoding to know it fits (most chunks, by far); past
    that, the chunk's bytes are counted exactly. The cut is the exact one either way.
    """
    batch: list[str] = []
    chars = 0
    used = -1  # the batch's bytes of UTF-8; -1: not counted (4 x chars is within the bound)
    for text in texts:
        if batch:
            if len(batch) >= size:
                yield batch
                batch, chars, used = [], 0, -1
            elif 4 * (chars + len(text)) > max_bytes:
                if used < 0:
                    used = sum(map(utf8_length, batch))
                if used + utf8_length(text) > max_bytes:
                    yield batch
                    batch, chars, used = [], 0, -1
        batch.append(text)
        chars += len(text)
        if used >= 0:
            used += utf8_length(text)
    if batch:
        yield batch
