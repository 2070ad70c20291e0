"""emotions.formats.fastcsv against the csv module: on any block of bytes, ``cells`` gives
exactly the columns ``csv.reader`` (strict, newline="" as the reader opens files) reads from
it, or ``None``. On what ``csv.writer`` writes it never gives up; on that text broken at random
places it gives up wherever the csv module reads anything but rows of the header's width."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import pytest

from emotions.formats.delimited import Layout
from emotions.formats.fastcsv import Cells, cells

# Characters a field may hold: the ones that matter to CSV, and text of every UTF-8 width.
ALPHABET = ["a", "b", " ", ",", ";", "\t", '"', '""', "\n", "\r", "\r\n", "é", "€", "😂", "x"]


def by_csv(data: bytes, layout: Layout) -> Cells | None:
    """What the reader takes from ``data``: the rows' two columns, if every row has the
    header's width (blank lines and other widths: ``None``)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")
    try:
        rows = list(csv.reader(text, delimiter=layout.delimiter, strict=True))
    except csv.Error:
        return None
    if any(len(row) != layout.width for row in rows):
        return None
    ids = None if layout.id is None else [row[layout.id] for row in rows]
    return Cells(ids, [row[layout.text] for row in rows], len(data))


def field(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 0, 1, 3, 12])))


def layouts() -> list[Layout]:
    return [
        Layout(",", 11, 1, 0),  # the downloader's
        Layout(",", 2, 1, 0),
        Layout(";", 2, 0, None),
        Layout("\t", 5, 1, 3),  # text before id, columns apart
        Layout(",", 1, 0, None),  # one column
        Layout(",", 3, 2, 0),  # the last column is the text
        Layout(",", 2, 0, 1),
    ]


def table(rng: random.Random, layout: Layout, rows: int, terminator: str) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=layout.delimiter, lineterminator=terminator)
    for _ in range(rows):
        row = [field(rng) for _ in range(layout.width)]
        if terminator == "\n":  # csv.writer would not quote a lone "\r", which ends a row
            row = [cell.replace("\r", "") for cell in row]
        writer.writerow(row)
    data = out.getvalue().encode()
    return data if rng.random() < 0.5 else data.removesuffix(terminator.encode())


SEEDS = range(60)


@pytest.mark.parametrize("layout", layouts())
def test_what_csv_writer_writes_is_read_exactly(layout: Layout) -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        data = table(rng, layout, rng.randint(1, 30), rng.choice(["\r\n", "\n"]))
        assert cells(data, layout, final=True) == by_csv(data, layout), seed


@pytest.mark.parametrize("layout", layouts())
def test_broken_text_is_read_exactly_or_given_up(layout: Layout) -> None:
    read = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        data = bytearray(table(rng, layout, rng.randint(1, 30), rng.choice(["\r\n", "\n"])))
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(data))
            while at < len(data) and data[at] & 0xC0 == 0x80:  # not inside a character
                at += 1
            data[at:at] = rng.choice([b'"', b"\r", b"\n", b"\n\n", b" ", layout.delimiter.encode()])
        found = cells(bytes(data), layout, final=True)
        if found is not None:
            assert found == by_csv(bytes(data), layout), seed
            read += 1
    assert 0 < read < len(SEEDS)  # both outcomes happen: the test looks at both


@pytest.mark.parametrize("layout", layouts())
def test_a_block_ends_at_its_last_complete_row(layout: Layout) -> None:
    """Cut anywhere (inside a quoted line break, a character, a CRLF), the first part gives
    its complete rows and the bytes they used; the rest, read after them, gives the others."""
    for seed in SEEDS:
        _check_cut(layout, random.Random(seed))


def _check_cut(layout: Layout, rng: random.Random) -> None:
    data = table(rng, layout, rng.randint(2, 30), rng.choice(["\r\n", "\n"]))
    at = rng.randint(1, len(data) - 1)
    head = cells(data[:at], layout, final=False)
    used = 0 if head is None else head.used
    tail = cells(data[used:], layout, final=True)
    assert tail is not None
    whole = by_csv(data, layout)
    assert whole is not None
    ids: list[Any] | None = None if layout.id is None else []
    texts: list[str] = []
    for part in (head, tail):
        if part is not None:
            texts += part.texts
            if ids is not None and part.ids is not None:
                ids += part.ids
    assert (ids, texts) == (whole.ids, whole.texts)
    if head is not None:
        assert data[: head.used].endswith(b"\n")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"a,x\n\nb,y\n", "a blank line"),
        (b"a,x\n  \nb,y\n", "a line of spaces"),
        (b'a,say "hi"\n', "a quote inside an unquoted field"),
        (b'a,"x"y\n', "text after a closing quote"),
        (b"a,x\rb,y\n", "a carriage return ending a row on its own"),
        (b"a,x\r", "a carriage return ending the file"),
        (b"a,x\0\n", "a NUL"),
        (b'a,"x\n', "a quoted field open at the end"),
        (b"a,x,\n", "a row wider than the header"),
        (b"a\n", "a row narrower than the header"),
    ],
)
def test_what_the_bytes_path_does_not_vouch_for(data: bytes, why: str) -> None:
    assert cells(data, Layout(",", 2, 1, 0), final=True) is None, why


def test_a_block_without_a_complete_row_gives_none() -> None:
    assert cells(b'a,"one\ntwo', Layout(",", 2, 1, 0), final=False) is None


def test_rows_ending_some_with_crlf_some_with_lf() -> None:
    """The one case where a row's end and the next row's start meet at one byte in some rows
    only: the fields are then sliced out one by one."""
    data = b'a,x\r\nb,"y\r\n"\nc,z\n'
    layout = Layout(",", 2, 1, 0)
    assert cells(data, layout, final=True) == by_csv(data, layout)
