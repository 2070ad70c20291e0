"""Files cut short: every reader tells "the data ends in the middle of a record" (a file still
being written: ``IncompleteInputError``) from "a record is malformed" (a plain ``InputError``).

Each cut is made where a real writer's buffer flush can leave a file: inside a string, after a
comma, inside a multi-byte character, inside a quoted CSV field, in the middle of a row.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from emotions.errors import IncompleteInputError, InputError
from emotions.formats import Format, Record, detect, iter_records

ARABIC = "هذا الفيديو رائع جدا"


def read(path: Path) -> list[Record]:
    return list(iter_records(path))


def comments(count: int, text: str = "comment") -> list[dict[str, Any]]:
    return [{"cid": f"c{i}", "text": f"{text} {i}", "votes": "1"} for i in range(count)]


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    """As youtube-comment-downloader writes: one ``json.dumps`` per line, non-ASCII as is."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def csv_bytes(records: list[dict[str, Any]]) -> bytes:
    """As the downloader's ``--format csv``: a BOM, a header, csv-module quoting, CRLF."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue().encode("utf-8-sig")


def incomplete(path: Path) -> IncompleteInputError:
    with pytest.raises(IncompleteInputError) as info:
        read(path)
    assert "still being written" in str(info.value)
    return info.value


def malformed(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        read(path)
    assert not isinstance(info.value, IncompleteInputError), str(info.value)
    return info.value


# --- one JSON document ---------------------------------------------------------------------------

DOCUMENT = [{"id": f"d{i}", "comment": f"{ARABIC} {i} 😂"} for i in range(5)]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(DOCUMENT, ensure_ascii=False),
        json.dumps({"comments": DOCUMENT}, ensure_ascii=False, indent=4),  # --format json
        json.dumps({"kind": "youtube#commentThreadListResponse", "items": []}),
    ],
    ids=["array", "indented-comments-object", "api-page"],
)
def test_json_document_cut_anywhere_is_incomplete(tmp_path: Path, text: str) -> None:
    path = tmp_path / "doc.json"
    data = text.encode("utf-8")
    cuts = sorted({1, 2, len(data) // 3, len(data) // 2, len(data) - 1})
    for cut in cuts:
        head = data[:cut]
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            continue  # cut inside a character: its own test below
        path.write_bytes(head)
        error = incomplete(path)
        assert str(error).startswith("doc.json line ")
        assert "the document ends before it is complete" in str(error), cut


def test_json_document_cut_then_blank_lines_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('[{"id": "a", "comment": "x"},\n  \n\t\n')
    incomplete(path)


def test_json_document_cut_inside_a_character_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    data = json.dumps(DOCUMENT, ensure_ascii=False).encode("utf-8")
    cut = data.index("😂".encode()) + 2  # two of the emoji's four bytes
    path.write_bytes(data[:cut])
    error = incomplete(path)
    assert "ends in the middle of a UTF-8 character" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        '[{"id": "a" "comment": "no comma"}, {"id": "b", "comment": "ok"}]',
        '[{"id": "a", "comment": "x"}] trailing',
        '[{"id": "a", "comment": "x"},]',
        '[{"id": "a", "comment": "unterminated}, {"id": "b", "comment": "y"}]',
    ],
)
def test_json_document_malformed_inside_is_not_incomplete(tmp_path: Path, text: str) -> None:
    path = tmp_path / "doc.json"
    path.write_text(text)
    assert str(malformed(path)).startswith("doc.json line 1: invalid JSON (")


def test_json_document_bad_byte_inside_is_not_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(b'[{"id": "a", "comment": "caf\xe9 au lait"}]')
    assert "not UTF-8 text (byte 0xe9" in str(malformed(path))


# --- JSON Lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 2000], ids=["small", "past-the-sniffed-head"])
def test_json_lines_last_line_without_newline_is_incomplete(tmp_path: Path, size: int) -> None:
    path = tmp_path / "video.jsonl"
    whole = jsonl_bytes(comments(size))
    last = whole.rindex(b"\n", 0, len(whole) - 1) + 1  # start of the last line
    path.write_bytes(whole[: last + 10])  # ten bytes into the last record
    records = iter_records(path)
    assert next(records) == Record("c0", "comment 0")  # streamed up to the cut
    with pytest.raises(IncompleteInputError) as info:
        list(records)
    assert str(info.value).startswith(
        f"video.jsonl line {size}: the last line is an unfinished record (no newline at its end"
    )


def test_json_lines_named_json_cut_after_first_line_is_incomplete(tmp_path: Path) -> None:
    """youtube-comment-downloader's default, saved as .json: sniffed as JSON Lines."""
    path = tmp_path / "video.json"
    whole = jsonl_bytes(comments(2))
    path.write_bytes(whole[:-8])
    assert detect(path) is Format.JSON_LINES
    incomplete(path)


def test_json_lines_only_a_partial_first_line_is_incomplete(tmp_path: Path) -> None:
    for name in ("video.json", "video.jsonl"):
        path = tmp_path / name
        path.write_bytes(jsonl_bytes(comments(1))[:15])
        incomplete(path)


def test_json_lines_cut_inside_a_character_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "video.jsonl"
    whole = jsonl_bytes([*comments(3), {"cid": "ar", "text": ARABIC}])
    path.write_bytes(whole[: whole.index(ARABIC.encode()) + 1])  # half of the first letter
    incomplete(path)


def test_json_lines_last_line_complete_without_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "video.jsonl"
    path.write_bytes(jsonl_bytes(comments(3)).rstrip(b"\n"))
    assert [r.id for r in read(path)] == ["c0", "c1", "c2"]


@pytest.mark.parametrize(
    "data",
    [
        b'{"cid": "a", "text": "x"}\n{"cid": "b", \n{"cid": "c", "text": "z"}\n',  # middle
        b'{"cid": "a", "text": "x"}\n{"cid": "b", \n',  # last line, but it ends with a newline
        b'{"cid": "a", "text": "x"}\n{"cid": "b", "text": "caf\xe9"}\n',  # bad byte, whole line
    ],
    ids=["middle-line", "terminated-last-line", "bad-byte"],
)
def test_json_lines_malformed_line_is_not_incomplete(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "video.jsonl"
    path.write_bytes(data)
    assert str(malformed(path)).startswith("video.jsonl line 2: ")


# --- CSV -----------------------------------------------------------------------------------------

MULTILINE = [
    {"cid": "a", "text": "plain", "votes": "1"},
    {"cid": "b", "text": 'She said "wow",\nthen left', "votes": "2"},
    {"cid": "c", "text": "last", "votes": "3"},
]


def test_csv_cut_inside_a_quoted_field_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "video.csv"
    whole = csv_bytes(MULTILINE)
    for marker in (b"She said", b"then left"):  # on the field's first line, and on its second
        path.write_bytes(whole[: whole.index(marker) + 4])
        error = incomplete(path)
        assert str(error).startswith(
            "video.csv line 3: a quoted field starting in this row is still open at the end"
        )


def test_csv_cut_in_the_middle_of_the_last_row_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "video.csv"
    whole = csv_bytes(MULTILINE)
    path.write_bytes(whole[: whole.index(b"c,last") + 3])  # "c,l": two of three fields
    error = incomplete(path)
    assert str(error).startswith("video.csv line 5: the last row has 2 of the header's 3 fields")


def test_csv_cut_inside_the_header_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "video.csv"
    path.write_bytes(csv_bytes(MULTILINE)[:8])  # BOM + "cid,te"
    assert "no text column" in str(incomplete(path))


@pytest.mark.parametrize("rows", [3, 5000], ids=["small", "past-the-sniffed-head"])
def test_csv_cut_inside_a_character_is_incomplete(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "video.csv"
    records = [*comments(rows), {"cid": "ar", "text": ARABIC, "votes": "1"}]
    whole = csv_bytes(records)
    path.write_bytes(whole[: whole.index(ARABIC.encode()) + 1])
    assert "ends in the middle of a UTF-8 character" in str(incomplete(path))


def test_csv_short_row_with_line_break_and_open_quote_inside_are_malformed(tmp_path: Path) -> None:
    path = tmp_path / "video.csv"
    path.write_bytes(b"cid,text,votes\r\na,ok,1\r\nb,short\r\n")
    assert "2 fields, but the header has 3" in str(malformed(path))
    path.write_bytes(b'cid,text\r\na,"x"y\r\nb,fine\r\n')
    assert "malformed CSV" in str(malformed(path))
