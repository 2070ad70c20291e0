"""emotions.spans: chunk ``k`` read from its span holds exactly the records (ids and texts) of
chunk ``k`` of the full parse, for every format and the nasty cases the format tests cover
(BOM, CRLF, blank lines, quoted line breaks, semicolons, duplicate ids, positional ids, ids
beyond 64 bits, API pages split across chunks); JSON Lines and CSV chunks are read from their
own bytes; a file changed since the scan is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.inputs import FORMATS
from emotions.chunking import chunks
from emotions.errors import InputError
from emotions.formats import Record, iter_records
from emotions.spans import NO_SPAN, Layout, chunk_records, scan

LIMIT = 1_000_000


def layout_and_check(path: Path, size: int, max_bytes: int) -> Layout:
    """Scan ``path`` and assert every chunk read by its span equals the full parse's."""
    layout = scan(path, size, max_bytes, max_comment_chars=LIMIT)
    expected = list(chunks(iter_records(path), size, max_bytes))
    assert len(layout.spans) == len(expected)
    assert layout.records == sum(len(c) for c in expected)
    for k, chunk in enumerate(expected):
        assert chunk_records(path, layout, k, max_comment_chars=LIMIT) == chunk, f"chunk {k}"
    return layout


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize(("size", "max_bytes"), [(1, 1 << 20), (7, 1 << 20), (50, 300)])
def test_every_chunk_from_its_span_equals_the_full_parse(
    tmp_path: Path, name: str, size: int, max_bytes: int
) -> None:
    suffix, writer = FORMATS[name]
    path = tmp_path / f"f{suffix}"
    writer(path, 400, 11)
    layout = layout_and_check(path, size, max_bytes)
    line_based = name in ("downloader-jsonl", "downloader-csv", "api-threads")
    assert all((s.start != NO_SPAN) == line_based for s in layout.spans)


def test_json_lines_bom_crlf_blank_lines_strings_and_positional_ids(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf\r\n{"cid": "a", "text": "one"}\r\n\r\n  \n"bare"\n{"text": null}\n\n'
        b'{"cid": "a", "text": "duplicate id"}\n{"text": "positional"}\n'
        b'{"cid": 12345678901234567890123, "text": "huge id"}\n'
    )
    for size in (1, 2, 3):
        layout_and_check(path, size, 1 << 20)
    layout = scan(path, 2, 1 << 20, max_comment_chars=LIMIT)
    assert chunk_records(path, layout, 1, max_comment_chars=LIMIT) == [
        Record("2", ""),
        Record("a", "duplicate id"),
    ]
    assert chunk_records(path, layout, 2, max_comment_chars=LIMIT) == [
        Record("4", "positional"),
        Record(12345678901234567890123, "huge id"),
    ]


def test_csv_bom_quoted_line_breaks_crlf_semicolons_and_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(
        b"\r\n\xef\xbb\xbfcid;text;votes\r\n"[2:]  # BOM first, as the downloader writes
        + b'a1;"He said ""hi""; I said\r\n""bye""";3\r\n'
        b"a2;plain, with comma;0\r\n"
        b"\r\n"
        b';"\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xf0\x9f\x91\x8b";1\r\n'
        b'a4;"multi\nline\n\ntext";2\r\n'
        b"a1;duplicate id;5\r\n"
    )
    for size in (1, 2, 4):
        layout = layout_and_check(path, size, 1 << 20)
        assert layout.prefix == len(b"\xef\xbb\xbfcid;text;votes\r\n")


def test_csv_with_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"\n\r\ncid,text\n1,\xc3\xa9t\xc3\xa9\n2,b\n,c\n")
    layout = layout_and_check(path, 1, 1 << 20)
    assert chunk_records(path, layout, 2, max_comment_chars=LIMIT) == [Record("2", "c")]


def test_api_pages_per_line_split_inside_a_page(tmp_path: Path) -> None:
    def comment(cid: object, text: str) -> dict[str, object]:
        return {"kind": "youtube#comment", "id": cid, "snippet": {"textOriginal": text}}

    def thread(i: int) -> dict[str, object]:
        return {
            "kind": "youtube#commentThread",
            "id": f"t{i}",
            "snippet": {"topLevelComment": comment(f"t{i}", f"top {i}")},
            "replies": {"comments": [comment(f"t{i}.r", f"reply {i}")]},
        }

    pages = [{"items": [thread(p * 10 + i) for i in range(10)]} for p in range(3)]
    pages[1]["items"][4]["replies"]["comments"][0]["id"] = 2**80  # type: ignore[index]
    path = tmp_path / "pages.json"
    path.write_text("".join(json.dumps(page) + "\n" for page in pages))
    layout = layout_and_check(path, 7, 1 << 20)  # 60 records, chunks cut inside pages
    assert any(span.skip for span in layout.spans)


def test_a_changed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"".join(b'{"cid": "%d", "text": "t"}\n' % i for i in range(10)))
    layout = scan(path, 4, 1 << 20, max_comment_chars=LIMIT)
    path.write_bytes(b'{"cid": "0", "text": "t"}\n')
    with pytest.raises(InputError, match="chunk 1 no longer has its 4 records"):
        chunk_records(path, layout, 1, max_comment_chars=LIMIT)


def test_scan_raises_what_the_full_parse_raises(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "t"}\n{"cid": "b"}\n')
    with pytest.raises(InputError, match="line 2 has no text field"):
        scan(path, 4, 1 << 20, max_comment_chars=LIMIT)
