"""emotions.chunking.chunks: chunks close at a count of comments or at a size in bytes of UTF-8,
whichever comes first; order is kept; a lone huge comment makes a chunk of one; and a file cut
twice is cut the same way (a resumed producer checks a file again and must cut it as before)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from emotions.chunking import chunks, cut
from emotions.formats import iter_records

BIG = 1 << 30  # a byte bound that never closes a chunk


def records(n: int, text: str = "comment {i}") -> list[str]:
    return [text.format(i=i) for i in range(n)]


def sizes(got: list[list[str]]) -> list[int]:
    return [len(c) for c in got]


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [
        (6, 2, [2, 2, 2]),
        (7, 3, [3, 3, 1]),
        (1, 256, [1]),
        (5, 1, [1, 1, 1, 1, 1]),
        (4, 4, [4]),
        (5, 4, [4, 1]),
    ],
)
def test_chunk_sizes_by_count_with_partial_last(n: int, size: int, expected: list[int]) -> None:
    assert sizes(list(chunks(records(n), size, BIG))) == expected


def test_records_keep_file_order_across_chunks() -> None:
    got = list(chunks(records(7), 3, BIG))
    assert [r for c in got for r in c] == records(7)
    assert got == [
        ["comment 0", "comment 1", "comment 2"],
        ["comment 3", "comment 4", "comment 5"],
        ["comment 6"],
    ]


def test_empty_input_gives_no_chunk() -> None:
    assert list(chunks([], 3, BIG)) == []
    assert list(chunks(iter(()), 1, 1)) == []


@pytest.mark.parametrize(
    ("lengths", "max_bytes", "expected"),
    [
        ([4] * 6, 10, [2, 2, 2]),  # 4 + 4 fits in 10, a third would not
        ([4] * 6, 8, [2, 2, 2]),  # exactly at the bound still fits
        ([4] * 6, 7, [1] * 6),
        ([3, 3, 100, 3, 3], 10, [2, 1, 2]),  # the huge one alone, the others around it
        ([100], 10, [1]),  # a lone comment beyond the bound still makes a chunk
        ([0] * 5, 1, [5]),  # empty comments cost nothing but still count
    ],
)
def test_chunks_close_at_a_size_in_bytes(
    lengths: list[int], max_bytes: int, expected: list[int]
) -> None:
    recs = ["x" * n for n in lengths]
    got = list(chunks(recs, 1000, max_bytes))
    assert sizes(got) == expected
    assert [r for c in got for r in c] == recs


def test_bytes_are_counted_in_utf8_not_characters() -> None:
    """Two emoji are 2 characters but 8 bytes: a bound in characters would let 4 in."""
    recs = ["😂😂"] * 6
    assert sizes(list(chunks(recs, 100, 16))) == [2, 2, 2]
    arabic = ["هذا"] * 4  # 3 characters, 6 bytes
    assert sizes(list(chunks(arabic, 100, 12))) == [2, 2]


def test_whichever_bound_comes_first() -> None:
    recs = records(10, "abcd")
    assert sizes(list(chunks(recs, 3, 100))) == [3, 3, 3, 1]  # the count
    assert sizes(list(chunks(recs, 100, 8))) == [2, 2, 2, 2, 2]  # the bytes


def test_a_lone_surrogate_is_counted_not_fatal() -> None:
    """JSON may carry ``\\ud800``; it cannot be encoded strictly but must still be cut."""
    recs = ["\ud800", "\ud800", "a"]
    assert sizes(list(chunks(recs, 100, 6))) == [2, 1]


def test_chunks_are_lazy_and_consume_only_what_they_yield() -> None:
    pulled: list[int] = []

    def source() -> Iterator[str]:
        for i in range(100):
            pulled.append(i)
            yield str(i)

    it = chunks(source(), 4, BIG)
    assert pulled == []  # nothing read before the first chunk is asked for
    first = next(it)
    assert first == ["0", "1", "2", "3"]
    assert len(pulled) <= 5  # a file of a million records is not read into memory
    assert sum(len(c) for c in it) == 96


def test_a_generator_error_surfaces_after_earlier_chunks() -> None:
    def source() -> Iterator[str]:
        yield from records(3)
        raise ValueError("bad line")

    it = chunks(source(), 2, BIG)
    assert next(it) == records(2)
    with pytest.raises(ValueError, match="bad line"):
        next(it)


def test_a_file_read_twice_is_cut_identically(tmp_path: Path) -> None:
    """The producer cuts the file to send texts, the assembly cuts it again for the ids: a
    heavy-tailed mix of lengths and scripts must give the same chunks both times."""
    texts = [("😂" * (i % 7)) + "هذا " * (i % 3) + "x" * ((i * 37) % 200) for i in range(300)]
    texts[:50] = [f"ok {i}" for i in range(50)]  # short ones: cut by the count
    texts[150] = "y" * 5000  # far beyond the byte bound
    path = tmp_path / "mix.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps({"id": i, "text": t}) for i, t in enumerate(texts)))
    first = list(chunks((r.comment for r in iter_records(path)), 16, 1024))
    second = list(chunks((r.comment for r in iter_records(path)), 16, 1024))
    assert first == second
    assert [t for c in first for t in c] == texts
    assert any(len(c) == 1 and c[0] == texts[150] for c in first)
    assert any(len(c) < 16 for c in first[:-1])  # the byte bound did cut
    assert max(len(c) for c in first) == 16


def exact_cut(texts: list[str], size: int, max_bytes: int) -> list[list[str]]:
    """The rule, stated plainly: every text's UTF-8 bytes counted."""
    out: list[list[str]] = []
    batch: list[str] = []
    used = 0
    for text in texts:
        cost = len(text.encode("utf-8", "surrogatepass"))
        if batch and (len(batch) >= size or used + cost > max_bytes):
            out.append(batch)
            batch, used = [], 0
        batch.append(text)
        used += cost
    return [*out, batch] if batch else out


def test_the_cut_is_the_exact_one_for_any_mix_of_scripts() -> None:
    """chunks() counts bytes only once 4 x the characters could pass the bound: the cut must
    be the plain rule's on every mix (ASCII, 2-, 3- and 4-byte characters, lone surrogates)."""
    rng = random.Random(7)
    alphabet = ["a", "é", "هذا", "中", "😂", "\ud800", " "]
    for _ in range(300):
        texts = ["".join(rng.choices(alphabet, k=rng.randrange(0, 40))) for _ in range(60)]
        size, max_bytes = rng.randrange(1, 30), rng.randrange(1, 400)
        assert list(chunks(texts, size, max_bytes)) == exact_cut(texts, size, max_bytes)


def test_the_cut_is_the_same_wherever_the_blocks_end() -> None:
    """The check hands cut() its texts in blocks of lines: a chunk that spans blocks, a block
    that ends just where a chunk closes, empty blocks, and the switch to counting bytes in the
    middle of a block all give the plain rule's cut."""
    four = "\N{FACE WITH TEARS OF JOY}"  # one character, four bytes: the quick bound is tight
    assert list(cut([[four] * 3], 10, 8)) == [[four, four], [four]]
    assert list(cut([[four], [four, "a"]], 10, 9)) == [[four, four, "a"]]
    rng = random.Random(11)
    alphabet = ["a", "é", "هذا", "中", "😂", "\ud800", " "]
    for _ in range(300):
        texts = ["".join(rng.choices(alphabet, k=rng.randrange(0, 40))) for _ in range(80)]
        size, max_bytes = rng.randrange(1, 30), rng.randrange(1, 600)
        blocks, at = [], 0
        while at < len(texts):
            step = rng.choice([0, 1, 2, 7, size, size + 1, 50])
            blocks.append(texts[at : at + step])
            at += step
        assert list(cut(blocks, size, max_bytes)) == exact_cut(texts, size, max_bytes)
