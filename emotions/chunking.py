"""Cutting a stream of comment texts into chunks, the same way every time.

The producer cuts a file's texts when it checks it (producer.spool) and sends each chunk; a
producer that resumes a job checks the file again and must cut it as before, and the assembly
pairs the file's records, in order, with each chunk's stored labels. A chunk closes at
``size`` comments or once its texts reach ``max_bytes`` bytes of UTF-8, whichever comes first
(a lone longer comment still makes a chunk of one), so no message is huge.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from itertools import accumulate

from emotions.formats.records import utf8_length


def chunks(texts: Iterable[str], size: int, max_bytes: int) -> Iterator[list[str]]:
    """:func:`cut` for texts one at a time: reads no text before it is needed."""
    return cut(([text] for text in texts), size, max_bytes)


def cut(blocks: Iterable[list[str]], size: int, max_bytes: int) -> Iterator[list[str]]:
    """Cut the texts of ``blocks`` (lists, in order) into chunks of at most ``size`` texts that
    stay within ``max_bytes`` of UTF-8, a lone longer text making a chunk of one.

    A character is at most 4 bytes of UTF-8, so while 4 x the characters of a chunk stay
    within ``max_bytes`` no text needs encoding to know it fits (most chunks, by far): such
    runs are taken a slice at a time, their lengths summed and searched in C. Past that, the
    chunk's bytes are counted exactly, one text at a time. The cut is the exact one either
    way, wherever the blocks begin and end.
    """
    quick = max_bytes // 4  # chars <= quick  <=>  4 x chars <= max_bytes
    batch: list[str] = []
    chars = 0
    used = -1  # the batch's bytes of UTF-8; -1: not counted (4 x chars is within the bound)
    for block in blocks:
        at, end = 0, len(block)
        while at < end:
            if not batch:  # a chunk's first text is always taken
                text = block[at]
                batch, chars, used = [text], len(text), -1
                at += 1
            elif len(batch) >= size:
                yield batch
                batch = []
            elif used < 0:  # a run of texts within 4 x the bound, found in C
                run = block[at : at + size - len(batch)]
                totals = list(accumulate(map(len, run), initial=chars))
                fits = bisect_right(totals, quick, 1) - 1
                if fits:
                    batch += run[:fits]
                    chars = totals[fits]
                    at += fits
                if fits < len(run):  # the next text might not fit: count bytes from now on
                    used = sum(map(utf8_length, batch))
            else:
                text = block[at]
                cost = utf8_length(text)
                if used + cost > max_bytes:
                    yield batch
                    batch = []
                    continue
                batch.append(text)
                chars += len(text)
                used += cost
                at += 1
    if batch:
        yield batch
