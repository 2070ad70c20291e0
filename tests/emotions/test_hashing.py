"""emotions.hashing: the digest covers exactly the bytes read through the one open file, the
parser's and the rest, in every format; a file replaced after it was opened is still read (and
hashed) as it was when opened."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest

from bench.inputs import FORMATS
from emotions.formats import detect, iter_records, read_records
from emotions.hashing import HashedInput


@pytest.mark.parametrize("name", list(FORMATS))
def test_records_and_digest_from_one_read_match_separate_reads(tmp_path: Path, name: str) -> None:
    suffix, writer = FORMATS[name]
    path = tmp_path / f"in{suffix}"
    writer(path, 700, 3)
    with HashedInput(path.open("rb")) as hashed:
        records = list(read_records(hashed.stream, path.name, detect(path)))
        digest = hashed.hexdigest()
    assert records == list(iter_records(path))
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_digest_includes_bytes_the_parser_never_read(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "x"}\n' * 50_000)
    with HashedInput(path.open("rb")) as hashed:
        first = next(iter(read_records(hashed.stream, path.name, detect(path))))
        assert first.id == "a"
        assert hashed.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_replacement_after_open_is_not_what_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "old", "text": "x"}\n')
    old = hashlib.sha256(path.read_bytes()).hexdigest()
    with HashedInput(path.open("rb")) as hashed:
        replacement = tmp_path / "c.jsonl.part"
        replacement.write_bytes(b'{"cid": "new", "text": "y"}\n')
        os.replace(replacement, path)
        records = list(read_records(hashed.stream, path.name, detect(path)))
        assert [r.id for r in records] == ["old"]
        assert hashed.hexdigest() == old


def test_a_file_rewritten_in_place_while_read_gives_another_digest(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    block = b'{"cid": "a", "text": "x"}\n' * 100_000  # larger than one read
    path.write_bytes(block)
    original = hashlib.sha256(block).hexdigest()
    with HashedInput(path.open("rb")) as hashed:
        reader = read_records(hashed.stream, path.name, detect(path))
        next(reader)  # the first block is read
        with path.open("r+b") as f:
            f.seek(len(block) - 10)
            f.write(b"Z")
        assert hashed.hexdigest() != original


def test_the_hashed_stream_cannot_seek(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"id,text\n1,a\n")
    with HashedInput(path.open("rb")) as hashed:
        assert not hashed.stream.seekable()


def test_the_rest_read_whole_is_hashed_once_in_few_reads(tmp_path: Path) -> None:
    """A document is read whole: after a first line (as a peek at the format would read), the
    rest comes in one read of the file, not thousands of 8 KB ones, and each byte is hashed
    once."""
    content = b"".join(b'{"id": "%d", "comment": "text"},\n' % i for i in range(100_000))
    path = tmp_path / "big.json"
    path.write_bytes(content)
    reads: list[int] = []

    class Counted(io.FileIO):
        def readinto(self, buffer: Any) -> int | None:
            reads.append(1)
            return super().readinto(buffer)

        def read(self, size: int | None = -1) -> bytes:
            reads.append(1)
            data = super().read(size)
            assert data is not None
            return data

    with HashedInput(Counted(path)) as hashed:
        data = hashed.stream.readline() + hashed.stream.read()
        assert data == content
        assert hashed.hexdigest() == hashlib.sha256(content).hexdigest()
    assert len(content) > 3_000_000 and len(reads) < 10
