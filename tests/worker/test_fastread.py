"""worker.fastread against the format readers: on every input the readers accept, the fast path
gives exactly their records (ids of the same type and value, texts, order, positional ids) or
gives up (``FallbackToReaders``); on an input they refuse it gives up, except for what msgspec
does not check in fields it skips and what the CSV path does not decode, which the assembly's
digest check covers (test_assembly).
The benchmark's files, the formats of real collections, take the fast path all the way."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.inputs import FORMATS
from emotions.errors import FallbackToReaders, InputError
from emotions.formats import ID_FIELDS, TEXT_FIELDS, csvread, detect, iter_records
from emotions.formats.json_document import API_KEYS
from emotions.formats.pages import ApiText, Thread
from emotions.formats.youtube_api import SNIPPET_TEXT_FIELDS, THREAD_KIND
from tests.producer.test_formats import api_comment, api_thread, downloader_comment, threads_page
from worker import fastread
from worker.columns import Line
from worker.fastread import columns

LIMIT = 1_000_000
BIG = 123456789012345678901234567890  # beyond 64 bits: orjson reads it inexactly
TEXT_T = {"textOriginal": "t"}


def jsonl(*values: Any) -> bytes:
    return b"".join(json.dumps(v, ensure_ascii=False).encode() + b"\n" for v in values)


def many(count: int, make: Callable[[int], Any]) -> list[Any]:
    return [make(i) for i in range(count)]


def thread(i: int, replies: int = 0, **top: Any) -> dict[str, Any]:
    comment = api_comment(f"t{i}", f"top {i} é", **top)
    return api_thread(comment, [api_comment(f"t{i}.r{k}", f"reply {k}") for k in range(replies)])


# Inputs the readers accept, one of each shape they know, and the irregular cases each fast
# path must hand back to them. Files over 128 KB or 512 elements span several blocks.
ACCEPTED: dict[str, bytes] = {
    "downloader.jsonl": jsonl(*many(50, lambda i: downloader_comment(f"c{i}", f"text {i} 😂"))),
    "bom_crlf_blank.jsonl": b"\xef\xbb\xbf"
    + jsonl({"cid": "a", "text": "x"}).replace(b"\n", b"\r\n")
    + b"\n  \n"
    + jsonl({"cid": "b", "text": "y"}, "a bare string"),
    "no_newline_at_end.jsonl": jsonl({"id": 1, "text": "x"}) + b'{"id": 2, "text": "y"}',
    "ids_all_kinds.jsonl": jsonl(
        {"id": 7, "text": "int"},
        {"id": BIG, "text": "big int"},
        {"id": -(1 << 63), "text": "smallest int64"},
        {"id": (1 << 64) - 1, "text": "largest uint64"},
        {"id": 1.5, "text": "float id"},
        {"id": True, "text": "bool id"},
        {"id": [1, {"id": 2}], "text": "array id"},
        {"id": {"a": BIG}, "text": "object id"},
        {"id": None, "comment_id": "ci", "text": "null id, then comment_id"},
        {"commentId": "cI", "cid": "cd", "text": "commentId before cid"},
        {"text": "no id: its position"},
    ),
    "text_fields.jsonl": jsonl(
        {"cid": "a", "comment": "comment wins", "text": "not this"},
        {"cid": "b", "comment": None, "text": "null comment still wins"},
        {"cid": "c", "text": 12},
        {"cid": "d", "text": 1.25},
        {"cid": "e", "text": BIG},
        {"cid": "f", "content": "content"},
        {"cid": "g", "textDisplay": "display"},
        {"cid": "h", "text": "  kept as is \n", "kind": "not an API kind"},
    ),
    "positions_across_blocks.jsonl": jsonl(
        *many(1500, lambda i: {"text": f"positional {i} " + "x" * 80}),
        {"cid": None, "text": "null id"},
        *many(1500, lambda i: {"cid": f"c{i}", "text": "y" * 90}),
        {"cid": False, "text": "bool id mid-file"},
        *many(1500, lambda i: {"text": f"positional again {i}" + "z" * 80}),
    ),
    "surrogate_pairs.jsonl": b'{"cid": "a", "text": "\\ud83d\\ude00 \\u00e9 \\" \\\\ \\/"}\n',
    "duplicate_keys.jsonl": b'{"cid": "a", "text": "first", "text": "last", "cid": "b"}\n',
    "pages.jsonl": jsonl(
        threads_page([thread(i, replies=i % 3) for i in range(40)]),
        threads_page([]),
        threads_page([thread(i) for i in range(40, 45)]),
    ),
    "pages_big.jsonl": jsonl(
        *many(6, lambda p: threads_page([thread(p * 100 + i, i % 7 == 0) for i in range(100)]))
    ),
    "thread_without_top_id.jsonl": jsonl(
        threads_page(
            [{**thread(1), "snippet": {"topLevelComment": {"snippet": {"textOriginal": "t"}}}}]
        )
    ),
    "thread_display_text_only.jsonl": jsonl(threads_page([thread(1, 1, original=False)])),
    "thread_replies_not_an_object.jsonl": jsonl(threads_page([{**thread(1), "replies": "none"}])),
    "comments_list.json": orjson.dumps(
        {"kind": "youtube#commentListResponse", "items": [api_comment("r1", "a")]}
    ),
    "page.json": orjson.dumps(threads_page([thread(i, i % 2) for i in range(20)])),
    "pages_array.json": orjson.dumps([threads_page([thread(i)]) for i in range(5)]),
    "items_plain.json": orjson.dumps({"items": [{"id": "p", "comment": "plain"}]}),
    "array.json": orjson.dumps(many(1200, lambda i: {"id": f"c{i}", "comment": f"text {i}"})),
    "array_no_ids.json": orjson.dumps(many(1200, lambda i: {"comment": f"text {i}"})),
    "array_strings.json": orjson.dumps(["one", "two"]),
    "array_mixed.json": orjson.dumps([{"id": 1, "comment": "a"}, {"comment": "b"}, "c"]),
    "array_big_id.json": b'[{"id": 123456789012345678901234567890, "comment": "a"}]',
    "single_object.json": b'{"id": "only", "comment": "one"}',
    "downloader_indented.json": orjson.dumps(
        {"comments": many(600, lambda i: downloader_comment(f"c{i}", f"t{i}"))},
        option=orjson.OPT_INDENT_2,
    ),
    "comments_with_text.json": b'{"comments": [], "text": "a comment named comments"}',
    "empty_array.json": b"[]",
    "bom_array.json": b"\xef\xbb\xbf" + orjson.dumps([{"id": "a", "comment": "b"}]),
    "downloader.csv": b"\xef\xbb\xbfcid,text,votes\r\n"
    + b"".join(b'c%d,"text, %d ""quoted""\r\nsecond line",%d\r\n' % (i, i, i) for i in range(1200)),
    "scsv.csv": b"\xef\xbb\xbfcid;text\r\na;x\r\nb;y\r\n",
    "tabs_header_case.csv": b"ID\tTEXT\n1\tx\n \ty\n",
    "blank_ids.csv": b"id,comment\n,x\nb,y\n  ,z\n",
    "no_id_column.csv": b"comment\nx\ny\n",
    "blank_lines.csv": b"id,comment\na,x\n\nb,y\n\n",
    "blank_before_header.csv": b"\n\nid,comment\na,x\n",
    "trailing_empty_cells.csv": b"id,comment\na,x,,\n",
    "header_only.csv": b"id,comment\n",
    "unterminated_last_row.csv": b"id,comment\na,x\nb,y",
}

# Inputs the readers refuse.
REFUSED: dict[str, bytes] = {
    "bad_line.jsonl": jsonl({"cid": "a", "text": "x"}) + b"{nope\n",
    "cut_short.jsonl": jsonl({"cid": "a", "text": "x"}) + b'{"cid": "b", "te',
    "no_text.jsonl": jsonl({"cid": "a", "title": "x"}),
    "array_line.jsonl": jsonl([1, 2]),
    "bad_text_type.jsonl": jsonl({"cid": "a", "text": ["x"]}),
    "lone_surrogate.jsonl": b'{"cid": "a", "text": "\\ud800"}\n',
    "bom_on_line_two.jsonl": jsonl({"cid": "a", "text": "x"})
    + b"\xef\xbb\xbf"
    + jsonl({"text": "y"}),
    "too_long.jsonl": jsonl({"cid": "a", "text": "x" * (LIMIT + 1)}),
    "api_without_text.jsonl": jsonl(
        threads_page([{**thread(1), "snippet": {"topLevelComment": {"id": "x", "snippet": {}}}}])
    ),
    "replies_not_a_list.jsonl": jsonl(threads_page([{**thread(1), "replies": {"comments": 3}}])),
    "truncated.json": b'[{"id": "a", "comment": "b"}, {"id": "c"',
    "unknown_shape.json": b'{"title": "x"}',
    "number.json": b"42",
    "bad_element.json": b'[{"id": "a", "comment": "b"}, 42]',
    "too_long.json": orjson.dumps([{"comment": "x" * (LIMIT + 1)}]),
    "short_row.csv": b"id,comment,votes\na,x,1\nb,y\n",
    "unclosed_quote.csv": b'id,comment\na,"open\n',
    "no_text_column.csv": b"id,title\na,x\n",
    "long_row.csv": b"id,comment\na,x,extra\n",
    "too_long.csv": b"id,comment\na," + b"x" * (LIMIT + 1) + b"\n",
    "text_after_closing_quote.csv": b'id,comment\na,"x"y\n',
    "not_utf8_in_a_text.csv": b"id,comment\n"
    + b"".join(b"%d,%s\n" % (i, b"x" * 90) for i in range(800))
    + b"n,\xff\n",
}

# Refused by orjson in a field msgspec skips, or by the CSV reader in a column the fast path
# does not decode: the fast path reads them, and only the digest check keeps their records from
# ever being written (tests/worker/test_assembly.py). (Past the head that detect() checks.)
HEAD = jsonl(*many(2000, lambda i: {"cid": f"c{i}", "text": "the same text"}))
SKIPPED_FIELD_GAPS = {
    "not_utf8_in_a_skipped_field.jsonl": HEAD + b'{"cid": "a", "text": "x", "author": "\xff"}\n',
    "infinite_number_in_a_skipped_field.jsonl": HEAD
    + b'{"cid": "a", "text": "x", "votes": 1e999}\n',
    "not_utf8_in_a_skipped_column.csv": b"cid,text,author\n"
    + b"".join(b"c%d,the same text,@a\n" % i for i in range(3000))
    + b"a,x,@\xff\n",
}


def read_by_readers(path: Path) -> list[tuple[type, Any, str]]:
    return [(type(r.id), r.id, r.comment) for r in iter_records(path, max_comment_chars=LIMIT)]


def read_fast(path: Path) -> list[tuple[type, Any, str]]:
    with path.open("rb") as stream:
        blocks = list(columns(stream, path.name, detect(path), LIMIT))
    return [(type(i), i, t) for ids, texts in blocks for i, t in zip(ids, texts, strict=True)]


def straddling(at: int, middle: bytes) -> bytes:
    """A CSV whose bytes ``middle`` start ``at`` bytes before the end of the first 128 KB
    block: a line break or a character cut in two by the block boundary."""
    head = b"id,comment\r\n" + b"".join(b"%05d,%s\r\n" % (i, b"x" * 92) for i in range(1300))
    pad = 128 * 1024 - len(head) - len(b"99999,") - at
    return head + b"99999," + b"y" * pad + middle + b"\r\n" + b"c,after the boundary\r\n"


ACCEPTED |= {
    "crlf_across_blocks.csv": straddling(1, b""),
    "emoji_across_blocks.csv": straddling(2, "😂é".encode()),
    "old_mac_line_ends.csv": b'id,comment\ra,x\rb,"two\rlines"\r',
    "quoted_crlf.csv": b'id,comment\r\na,"one\r\ntwo"\r\nb,"\n"\r\n',
    "line_separator_in_a_field.csv": 'id,comment\na,"one\u2028two"\nb,x\u0085\n'.encode(),
    "big_csv_many_blocks.csv": b"\xef\xbb\xbfcid,text\r\n"
    + b"".join(f"c{i},{'é' * (i % 50)} 😂 é\r\n".encode() for i in range(9000)),
    "quoted_everywhere.csv": b'"id","comment"\r\n"a","x, y"\r\n"b",""\r\n"""c""","z"\r\n',
    "text_before_id.csv": b'comment;x;id\n"a; b";1;2\n;3;\n',
    "columns_apart.csv": b"id\ta\tb\ttext\tc\n1\t\t\tone\t\n2\tq\tr\t\ts\n",
    "mixed_line_ends.csv": b'id,comment\r\na,x\nb,"y\r\n"\r\nc,z\n',
    "cr_in_quotes.csv": b'id,comment\na,"x\ry"\nb,"\r"\n',
    "empty_last_field_unterminated.csv": b"id,comment\na,x\nb,",
    "quoted_last_field_unterminated.csv": b'id,comment\na,"x\n"',
    "quote_inside_an_unquoted_field.csv": b'id,comment\na,say "hi"\nb,x\n',
    "lone_cr_ends_a_row.csv": b"id,comment\na,x\rb,y\n",
    "nul_past_the_head.csv": b"id,comment\n"
    + b"".join(b"%d,%s\n" % (i, b"x" * 90) for i in range(800))
    + b"n,nul \x00 inside\n",
}

# Accepted inputs whose shape the fast path leaves to the readers (the whole file): so that
# the test below cannot pass by giving up everywhere, every other input must be read fast.
GIVES_UP = {
    "comments_list.json",  # comments.list items, not threads
    "items_plain.json",
    "array_strings.json",
    "array_mixed.json",
    "array_big_id.json",  # an integer orjson reads inexactly: the reader parses it again
    "single_object.json",
    "comments_with_text.json",
    "blank_lines.csv",
    "blank_before_header.csv",
    "trailing_empty_cells.csv",
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_the_fast_path_gives_the_readers_records_or_gives_up(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(ACCEPTED[name])
    expected = read_by_readers(path)
    if name in GIVES_UP:
        with pytest.raises(FallbackToReaders):
            read_fast(path)
    else:
        assert read_fast(path) == expected


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_the_readers_refuse_the_fast_path_gives_up_on(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(REFUSED[name])
    with pytest.raises(InputError):
        read_by_readers(path)
    with pytest.raises(FallbackToReaders):
        read_fast(path)


@pytest.mark.parametrize("name", list(SKIPPED_FIELD_GAPS))
def test_what_msgspec_skips_unchecked_is_read_by_the_fast_path(tmp_path: Path, name: str) -> None:
    """The documented gap, pinned: should msgspec ever check these, the docstring must change."""
    path = tmp_path / name
    path.write_bytes(SKIPPED_FIELD_GAPS[name])
    with pytest.raises(InputError):
        read_by_readers(path)
    assert read_fast(path)[-1] == (str, "a", "x")


def test_an_irregular_json_lines_block_is_read_by_the_reader_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the irregular block goes to the reader, its records numbered where it starts."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(ACCEPTED["positions_across_blocks.jsonl"])
    calls: list[int] = []
    by_reader = fastread._lines_by_reader

    def counted(lines: list[bytes], name: str, position: int, limit: int) -> Any:
        calls.append(position)
        return by_reader(lines, name, position, limit)

    monkeypatch.setattr(fastread, "_lines_by_reader", counted)
    assert read_fast(path) == read_by_readers(path)
    assert len(calls) == 2  # the blocks holding the null id and the bool id
    assert 0 < calls[0] < calls[1] < 4502


def test_a_byte_order_mark_starting_a_later_block_is_refused_not_stripped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader strips one only from the file's first line; handing a later block that starts
    with one to the reader would strip it there too, so the fast path gives up at once."""
    line = b'{"cid": "c", "text": "%s"}\n' % (b"x" * 103)
    assert len(line) == 128  # 1,025 of them fill a block of 128 KB (readlines stops past it)
    path = tmp_path / "late_bom.jsonl"
    path.write_bytes(line * 1025 + b"\xef\xbb\xbf" + line)
    with pytest.raises(InputError):
        read_by_readers(path)
    monkeypatch.setattr(fastread, "_lines_by_reader", refuse)
    with pytest.raises(FallbackToReaders):
        read_fast(path)


def refuse(*_: Any) -> Any:
    raise AssertionError("a block of a real tool's file was read by the reader")


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_benchmark_formats_never_need_the_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    suffix, writer = FORMATS[name]
    path = tmp_path / f"{name}{suffix}"
    writer(path, 3000, 1)
    monkeypatch.setattr(fastread, "_lines_by_reader", refuse)
    monkeypatch.setattr(csvread, "_by_reader", refuse)
    assert read_fast(path) == read_by_readers(path)


def test_the_api_structs_follow_the_readers_field_names() -> None:
    """The structs name the fields the readers choose: should the readers' order change, the
    structs must follow it."""
    assert SNIPPET_TEXT_FIELDS[0] in ApiText.__struct_fields__
    assert typing.get_args(typing.get_type_hints(Thread)["kind"]) == (THREAD_KIND,)
    assert set(ID_FIELDS) | set(TEXT_FIELDS) | API_KEYS <= set(Line.__struct_fields__)


# Accepted CSV that the bytes path (emotions.formats.fastcsv) leaves to csv.reader, from the
# block where it cannot vouch for the rows on: every other accepted CSV is read without
# csv.reader.
CSV_BY_READER = {
    "old_mac_line_ends.csv",  # no line feed ends the header
    "quote_inside_an_unquoted_field.csv",
    "lone_cr_ends_a_row.csv",
    "nul_past_the_head.csv",
}
CSV_READ = [n for n in ACCEPTED if n.endswith(".csv") and n not in GIVES_UP]


def csv_module_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The record positions from which csv.reader takes over, as they happen."""
    calls: list[int] = []
    by_reader = csvread._by_reader

    def counted(*args: Any) -> Any:
        calls.append(args[-1])
        return by_reader(*args)

    monkeypatch.setattr(csvread, "_by_reader", counted)
    return calls


@pytest.mark.parametrize("name", CSV_READ)
def test_csv_is_read_from_its_bytes_unless_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(ACCEPTED[name])
    calls = csv_module_calls(monkeypatch)
    assert read_fast(path) == read_by_readers(path)
    assert bool(calls) == (name in CSV_BY_READER)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_csv_blocks_of_any_size_give_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Blocks end anywhere: inside a quoted line break, a character, a CRLF, the header."""
    monkeypatch.setattr(csvread, "CSV_BLOCK_BYTES", block)
    for name in CSV_READ:
        path = tmp_path / name
        path.write_bytes(ACCEPTED[name])
        assert read_fast(path) == read_by_readers(path), name
    for name in [n for n in REFUSED if n.endswith(".csv")]:
        path = tmp_path / name
        path.write_bytes(REFUSED[name])
        with pytest.raises(FallbackToReaders):
            read_fast(path)


def test_csv_read_by_the_module_from_a_later_block_keeps_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The csv module takes over at the start of the block it is handed, numbering the
    records from there (positional ids) and reading the rest of the file."""
    monkeypatch.setattr(csvread, "CSV_BLOCK_BYTES", 256)
    rows = b"".join(b",row %d\n" % i for i in range(200))
    path = tmp_path / "late.csv"
    path.write_bytes(b"id,comment\n" + rows + b',say "hi"\n' + rows)
    calls = csv_module_calls(monkeypatch)
    assert read_fast(path) == read_by_readers(path)
    assert len(calls) == 1
    assert 150 < calls[0] <= 200


def test_without_numpy_csv_is_read_by_the_csv_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install without numpy (emotions.formats.fastcsv cannot be imported) reads the same
    records."""
    monkeypatch.setattr(csvread, "fastcsv", None)
    calls = csv_module_calls(monkeypatch)
    for name in CSV_READ:
        path = tmp_path / name
        path.write_bytes(ACCEPTED[name])
        calls.clear()
        expected = read_by_readers(path)
        assert read_fast(path) == expected, name
        assert bool(calls) == bool(expected), name  # every row by the csv module
