"""producer.chunking.chunks: sizes, order, the last partial chunk, and the exact JSON shape
(lists of ``[id, comment]``) the chunk task receives."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from producer.chunking import chunks

from emotions.formats import Record


def records(n: int) -> list[Record]:
    return [Record(f"id{i}", f"comment {i}") for i in range(n)]


@pytest.mark.parametrize(
    ("n", "size", "sizes"),
    [
        (6, 2, [2, 2, 2]),
        (7, 3, [3, 3, 1]),
        (1, 256, [1]),
        (5, 1, [1, 1, 1, 1, 1]),
        (4, 4, [4]),
        (5, 4, [4, 1]),
    ],
)
def test_chunk_sizes_with_partial_last(n: int, size: int, sizes: list[int]) -> None:
    assert [len(c) for c in chunks(records(n), size)] == sizes


def test_records_keep_file_order_across_chunks() -> None:
    got = list(chunks(records(7), 3))
    assert got == [
        [["id0", "comment 0"], ["id1", "comment 1"], ["id2", "comment 2"]],
        [["id3", "comment 3"], ["id4", "comment 4"], ["id5", "comment 5"]],
        [["id6", "comment 6"]],
    ]


def test_empty_input_gives_no_chunk() -> None:
    assert list(chunks([], 3)) == []
    assert list(chunks(iter(()), 1)) == []


def test_chunks_are_lists_of_id_comment_lists_as_json_sends_them() -> None:
    recs = [Record(0, "a"), Record("x", ""), Record(None, "ü 😂"), Record("x", "dup id")]
    got = list(chunks(recs, 3))
    for chunk in got:
        assert type(chunk) is list
        assert all(type(pair) is list and len(pair) == 2 for pair in chunk)
    # exactly what survives the JSON round trip of a Celery message: ids untouched, dups kept
    assert orjson.loads(orjson.dumps(got)) == got
    assert got == [[[0, "a"], ["x", ""], [None, "ü 😂"]], [["x", "dup id"]]]


def test_chunks_are_lazy_and_consume_only_what_they_yield() -> None:
    pulled: list[int] = []

    def source() -> Iterator[Record]:
        for i in range(100):
            pulled.append(i)
            yield Record(str(i), "c")

    it = chunks(source(), 4)
    assert pulled == []  # nothing read before the first chunk is asked for
    first = next(it)
    assert [r[0] for r in first] == ["0", "1", "2", "3"]
    assert len(pulled) <= 5  # a file of a million records is not read into memory
    assert sum(len(c) for c in it) == 96


def test_a_generator_error_surfaces_after_earlier_chunks() -> None:
    def source() -> Iterator[Record]:
        yield from records(3)
        raise ValueError("bad line")

    it = chunks(source(), 2)
    assert next(it) == [["id0", "comment 0"], ["id1", "comment 1"]]
    with pytest.raises(ValueError, match="bad line"):
        next(it)
