"""Input formats: every file is written the way the real tool writes it, and the exact records
(ids as given, text as given, positional ids, order) are asserted."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any, get_args, get_type_hints

import orjson
import pytest

from bench.inputs import FORMATS
from emotions.errors import IncompleteInputError, InputError, InputTooLargeError, PermanentError
from emotions.formats import Record, csvread, iter_records, read_texts
from emotions.formats.csvread import csv_columns
from emotions.formats.detect import HEAD_BYTES, Format, detect
from emotions.formats.json_document import API_KEYS
from emotions.formats.pages import Page, TextFields, Thread, texts_of_pages
from emotions.formats.records import TEXT_FIELDS
from emotions.formats.texts import (
    Obj,
    PlainDoc,
    Snippet,
    plain_document_texts,
    plain_texts,
)
from emotions.formats.youtube_api import SNIPPET_TEXT_FIELDS, THREAD_KIND

ARABIC = "هذا الفيديو رائع جدا"
EMOJI = "😂😂🔥 best part 3:14 👍🏽"


def read(path: Path, **kwargs: Any) -> list[Record]:
    """The file's records; every test also checks that the producer's texts-only path
    (read_texts, a faster reader for JSON Lines) gives their texts, or the very same error."""
    try:
        records = list(iter_records(path, **kwargs))
    except Exception as e:
        with pytest.raises(type(e)) as raised:
            texts(path, **kwargs)
        assert str(raised.value) == str(e)
        raise
    assert texts(path, **kwargs) == [r.comment for r in records]
    return records


def texts(path: Path, max_comment_chars: int = 1_000_000) -> list[str]:
    with path.open("rb") as stream:
        blocks = read_texts(stream, path.name, detect(path), max_comment_chars=max_comment_chars)
        return [text for block in blocks for text in block]


def write_json(path: Path, value: Any, indent: int | None = None) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=indent), encoding="utf-8")
    return path


def downloader_comment(cid: str, text: str, **extra: Any) -> dict[str, Any]:
    """One comment as youtube-comment-downloader yields it (its JSON Lines keys, in order)."""
    comment = {
        "cid": cid,
        "text": text,
        "time": "2 years ago",
        "author": "@someone",
        "channel": "UCabcdefghijklmnopqrstuv",
        "votes": "1.2K",
        "replies": "3",
        "photo": "https://yt3.ggpht.com/photo.jpg",
        "heart": False,
        "reply": "." in cid,
        "time_parsed": 1650000000.0,
    }
    comment.update(extra)
    return comment


def write_jsonl(path: Path, comments: list[Any]) -> Path:
    """As youtube-comment-downloader writes: json.dumps(ensure_ascii=False), one per line."""
    with path.open("w", encoding="utf8") as fp:
        for comment in comments:
            print(json.dumps(comment, ensure_ascii=False), file=fp)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    """As the downloader's --format csv/scsv: UTF-8 with a BOM, header row, csv-module quoting."""
    with path.open("w", encoding="utf-8-sig", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def api_comment(comment_id: str, text: str, *, original: bool = True) -> dict[str, Any]:
    snippet: dict[str, Any] = {
        "channelId": "UCchannel",
        "videoId": "dQw4w9WgXcQ",
        "textDisplay": f"<b>{text}</b>",
        "authorDisplayName": "@viewer",
        "likeCount": 4,
        "publishedAt": "2024-01-02T03:04:05Z",
    }
    if original:
        snippet["textOriginal"] = text
    return {"kind": "youtube#comment", "etag": "e", "id": comment_id, "snippet": snippet}


def api_thread(top: dict[str, Any], replies: list[dict[str, Any]]) -> dict[str, Any]:
    thread: dict[str, Any] = {
        "kind": "youtube#commentThread",
        "etag": "t",
        "id": top["id"],
        "snippet": {
            "channelId": "UCchannel",
            "videoId": "dQw4w9WgXcQ",
            "topLevelComment": top,
            "canReply": True,
            "totalReplyCount": len(replies),
            "isPublic": True,
        },
    }
    if replies:
        thread["replies"] = {"comments": replies}
    return thread


def threads_page(threads: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "youtube#commentThreadListResponse",
        "etag": "p",
        "nextPageToken": "QURTSl9p",
        "pageInfo": {"totalResults": len(threads), "resultsPerPage": 100},
        "items": threads,
    }


# --- JSON array ---------------------------------------------------------------------------


def test_json_array_of_objects(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "comments.json",
        [{"id": "a1", "comment": "I love it"}, {"id": "a2", "comment": ARABIC}],
    )
    assert read(path) == [Record("a1", "I love it"), Record("a2", ARABIC)]


def test_id_fields_in_order_ids_kept_as_given_and_positional_ids(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "mixed.json",
        [
            {"comment_id": "c0", "text": "zero"},
            {"commentId": 7, "content": "one"},
            {"cid": "Ugx.reply", "textOriginal": "two"},
            {"textDisplay": "three"},  # no id: its position
            {"id": None, "cid": "from-cid", "comment": "four"},  # null id skipped
            {"id": "dup", "comment": "five"},
            {"id": "dup", "comment": "six"},  # duplicate ids are kept, not merged
            {"id": None, "comment": "seven"},
            {"id": "first", "comment_id": "second", "cid": "third", "comment": "eight"},
            {"id": 9.5, "comment": "nine"},
        ],
    )
    assert read(path) == [
        Record("c0", "zero"),
        Record(7, "one"),
        Record("Ugx.reply", "two"),
        Record("3", "three"),
        Record("from-cid", "four"),
        Record("dup", "five"),
        Record("dup", "six"),
        Record("7", "seven"),
        Record("first", "eight"),
        Record(9.5, "nine"),
    ]


def test_text_field_priority(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "t.json",
        [
            {"content": "c", "textDisplay": "d", "textOriginal": "o", "text": "t", "comment": "m"},
            {"content": "c", "textDisplay": "d", "textOriginal": "o", "text": "t"},
            {"content": "c", "textDisplay": "d", "textOriginal": "o"},
            {"content": "c", "textDisplay": "d"},
            {"content": "c"},
        ],
    )
    assert [r.comment for r in read(path)] == ["m", "t", "o", "d", "c"]


def test_text_values_null_numbers_and_unstripped_strings(tmp_path: Path) -> None:
    path = tmp_path / "values.json"
    path.write_bytes(
        b'[{"id":1,"comment":null},{"id":2,"comment":5},{"id":3,"comment":2.5},'
        b'{"id":4,"comment":-0.0},{"id":5,"comment":"  spaced \\n "},{"id":6,"comment":""},'
        b'{"id":7,"comment":1e20}]'
    )
    assert read(path) == [
        Record(1, ""),
        Record(2, "5"),
        Record(3, "2.5"),
        Record(4, "-0.0"),
        Record(5, "  spaced \n "),
        Record(6, ""),
        Record(7, "1e+20"),
    ]


@pytest.mark.parametrize(
    ("value", "kind"), [("true", "true/false"), ("[1]", "an array"), ('{"a":1}', "an object")]
)
def test_text_of_another_type_is_an_input_error(tmp_path: Path, value: str, kind: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(f'[{{"id":"x","comment":"ok"}},{{"id":"y","comment":{value}}}]')
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value) == (
        f"bad.json record 1: field 'comment' is {kind}; expected text, a number or null"
    )


def test_strings_are_comments_with_positional_ids_counting_every_record(tmp_path: Path) -> None:
    path = write_json(tmp_path / "s.json", [{"id": "x", "comment": "a"}, "b", "", {"text": "d"}])
    assert read(path) == [Record("x", "a"), Record("1", "b"), Record("2", ""), Record("3", "d")]


def test_non_object_record_is_an_input_error(tmp_path: Path) -> None:
    path = write_json(tmp_path / "n.json", ["fine", 42])
    with pytest.raises(InputError, match=r"^n\.json record 1 is a number; expected a comment"):
        read(path)


def test_record_without_text_field_fails_the_file(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "comments.json",
        [{"id": str(i), "comment": "ok"} for i in range(5)] + [{"author": "x", "votes": 3}],
    )
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value) == (
        "comments.json record 5 has no text field: expected one of comment, text, "
        "textOriginal, textDisplay, content; found keys: author, votes"
    )


def test_empty_array_is_zero_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("[ ]\n")
    assert read(path) == []


def test_json_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf[\r\n  {"id": "a", "comment": "caf\xc3\xa9"}\r\n]\r\n')
    assert read(path) == [Record("a", "café")]


def test_single_comment_object_is_one_record(tmp_path: Path) -> None:
    path = write_json(tmp_path / "one.json", downloader_comment("Ugz1", EMOJI))
    assert read(path) == [Record("Ugz1", EMOJI)]


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"id": "a", "comment": "x"},\n  {"id": "b" "comment": "y"}\n]\n')
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value).startswith("broken.json line 3: invalid JSON (")
    assert "column 14" in str(info.value)
    assert isinstance(info.value.__cause__, orjson.JSONDecodeError)


def test_truncated_json_is_an_incomplete_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('[{"id": "a", "comment": "x"}, {"id": "b", "comm')
    with pytest.raises(IncompleteInputError, match=r"^cut\.json line 1: invalid JSON") as info:
        read(path)
    assert isinstance(info.value, InputError)  # still an input error for whoever gives up
    assert "ends before it is complete; is it still being written" in str(info.value)


@pytest.mark.parametrize(
    ("content", "found"),
    [
        ('{"data": [{"id": "a", "comment": "x"}], "count": 1}', "found an object with keys: data"),
        ("42", "found a number"),
        ('"just a string"', "found a string"),
    ],
)
def test_unknown_json_shape(tmp_path: Path, content: str, found: str) -> None:
    path = tmp_path / "shape.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read(path)
    message = str(info.value)
    assert message.startswith(
        "shape.json: unknown JSON shape: expected an array of comment objects, "
        '{"comments": [...]} or a YouTube Data API response with "items"; '
    )
    assert found in message


def test_not_json_with_json_extension(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text("id,comment\n1,hello\n")
    with pytest.raises(InputError, match=r"^notes\.json line 1: invalid JSON"):
        read(path)


# --- youtube-comment-downloader -------------------------------------------------------------


DOWNLOADED = [
    downloader_comment("UgzA", "First! 🎉"),
    downloader_comment("UgzA.r1", ARABIC),
    downloader_comment("UgzB", 'She said "wow", then left;\nsecond line'),
    downloader_comment("UgzC", ""),
]
EXPECTED = [
    Record("UgzA", "First! 🎉"),
    Record("UgzA.r1", ARABIC),
    Record("UgzB", 'She said "wow", then left;\nsecond line'),
    Record("UgzC", ""),
]


@pytest.mark.parametrize("name", ["video.jsonl", "video.json", "video.ndjson", "video"])
def test_downloader_json_lines_whatever_the_extension(tmp_path: Path, name: str) -> None:
    path = write_jsonl(tmp_path / name, DOWNLOADED)
    assert detect(path) is Format.JSON_LINES
    assert read(path) == EXPECTED


def test_json_lines_blank_lines_bom_crlf_and_strings(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf\r\n{"cid": "a", "text": "one"}\r\n\r\n  \n"bare"\n{"text": null}\n\n'
    )
    assert read(path) == [Record("a", "one"), Record("1", "bare"), Record("2", "")]


def test_json_lines_invalid_line_is_reported_after_streaming_earlier_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "comments.jsonl"
    lines = [json.dumps({"cid": f"c{i}", "text": "ok"}) for i in range(11)] + ['{"cid": "x", ']
    path.write_text("\n".join(lines) + "\n")
    records = iter_records(path)
    assert next(records) == Record("c0", "ok")  # streamed: yielded before the bad line is read
    with pytest.raises(InputError) as info:
        list(records)
    assert str(info.value).startswith("comments.jsonl line 12: invalid JSON (")


def test_json_lines_record_without_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"cid": "a", "text": "x"}, {"author": "y"}])
    with pytest.raises(InputError, match=r"^c\.jsonl line 2 has no text field: expected one of"):
        read(path)


def test_json_lines_array_line_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"cid": "a", "text": "x"}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"^c\.jsonl line 2 is an array; expected a comment"):
        read(path)


def test_json_lines_non_utf8_line_after_the_sniffed_head(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    good = json.dumps({"cid": "a", "text": "x" * 100}).encode() + b"\n"
    count = 70_000 // len(good) + 1  # past the 64 KiB head that detect() checks
    path.write_bytes(good * count + b'{"cid": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value).startswith(
        f"big.jsonl line {count + 1}: not UTF-8 text (byte 0xe9 cannot be decoded): is this a "
        "comment file?"
    )


def test_downloader_indented_comments_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "video.json", {"comments": DOWNLOADED}, indent=4)
    assert detect(path) is Format.JSON_DOCUMENT
    assert read(path) == EXPECTED


def test_downloader_comments_object_compact_one_line(tmp_path: Path) -> None:
    path = write_json(tmp_path / "video.json", {"comments": DOWNLOADED})
    assert read(path) == EXPECTED


def test_comments_object_bad_record_names_its_path(tmp_path: Path) -> None:
    path = write_json(tmp_path / "v.json", {"comments": [DOWNLOADED[0], {"cid": "x"}]}, indent=4)
    with pytest.raises(InputError, match=r"^v\.json: comments\[1\] has no text field"):
        read(path)


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_downloader_csv_and_scsv(tmp_path: Path, delimiter: str) -> None:
    path = write_csv(tmp_path / "video.csv", DOWNLOADED, delimiter)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfcid" + delimiter.encode() + b"text")
    assert read(path) == EXPECTED


def test_csv_raw_bytes_quotes_newlines_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(
        b"\xef\xbb\xbfcid;text;votes\r\n"
        b'a1;"He said ""hi""; I said\r\n""bye""";3\r\n'
        b"a2;plain, with comma;0\r\n"
        b"\r\n"
        b';"\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xf0\x9f\x91\x8b";1\r\n'
        b'a4;"";2\r\n'
    )
    assert read(path) == [
        Record("a1", 'He said "hi"; I said\r\n"bye"'),
        Record("a2", "plain, with comma"),
        Record("2", "مرحبا 👋"),
        Record("a4", ""),
    ]


def test_csv_any_extension_header_case_and_tabs(tmp_path: Path) -> None:
    path = tmp_path / "sheet.txt"
    path.write_text("Comment ID\tAuthor\tComment\n17\tme\thello\tthere\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"^sheet\.txt line 2: 4 fields, but the header has 3"):
        read(path)
    path.write_text("Author\tCOMMENT\tCid\nme\thello there\t17\n\n", encoding="utf-8")
    assert detect(path) is Format.CSV
    assert read(path) == [Record("17", "hello there")]


def test_csv_without_text_column_lists_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [{"cid": "a", "author": "b", "votes": "1"}])
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value) == (
        "c.csv: no text column: expected one of comment, text, textOriginal, textDisplay, "
        "content; found columns: cid, author, votes (read with delimiter ',')"
    )


def test_csv_header_only_is_zero_records(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("\ufeffcid,text\r\n", encoding="utf-8")
    assert read(path) == []


def test_csv_short_row_and_unclosed_quote(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("cid,text,votes\na,hello,1\nb,world\n")
    with pytest.raises(InputError, match=r"^c\.csv line 3: 2 fields, but the header has 3"):
        read(path)
    path.write_text('cid,text\na,"x"y\nb,more\n')
    with pytest.raises(InputError, match=r"^c\.csv line 2: malformed CSV") as info:
        read(path)
    assert not isinstance(info.value, IncompleteInputError)


def test_csv_trailing_empty_cells_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("cid,text\na,hello,,\n")
    assert read(path) == [Record("a", "hello")]


def test_csv_latin1_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"cid;text\n" + b"a;ok\n" * 20_000 + "b;café\n".encode("latin-1"))
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value).startswith("excel.csv line 20002: not UTF-8 text (byte 0xe9")
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_csv_comment_longer_than_csv_default_field_limit(tmp_path: Path) -> None:
    text = "x" * 200_000
    path = write_csv(tmp_path / "long.csv", [{"cid": "a", "text": text}])
    assert read(path) == [Record("a", text)]


# --- YouTube Data API ------------------------------------------------------------------------


def test_comment_threads_with_replies_in_order(tmp_path: Path) -> None:
    page = threads_page(
        [
            api_thread(
                api_comment("Ugw1", "top one"),
                [api_comment("Ugw1.r1", ARABIC), api_comment("Ugw1.r2", "no orig", original=False)],
            ),
            api_thread(api_comment("Ugw2", EMOJI), []),
        ]
    )
    path = write_json(tmp_path / "threads.json", page, indent=2)
    assert read(path) == [
        Record("Ugw1", "top one"),
        Record("Ugw1.r1", ARABIC),
        Record("Ugw1.r2", "<b>no orig</b>"),  # textDisplay when textOriginal is absent
        Record("Ugw2", EMOJI),
    ]


def test_comments_list_response(tmp_path: Path) -> None:
    page = {
        "kind": "youtube#commentListResponse",
        "items": [api_comment("r1", "reply one"), api_comment("r2", "")],
    }
    assert read(write_json(tmp_path / "replies.json", page)) == [
        Record("r1", "reply one"),
        Record("r2", ""),
    ]


def test_array_of_pages_and_one_page_per_line(tmp_path: Path) -> None:
    pages = [
        threads_page([api_thread(api_comment("A", "a"), [api_comment("A.1", "a1")])]),
        threads_page([api_thread(api_comment("B", "b"), [])]),
    ]
    expected = [Record("A", "a"), Record("A.1", "a1"), Record("B", "b")]
    assert read(write_json(tmp_path / "pages.json", pages, indent=1)) == expected
    assert read(write_jsonl(tmp_path / "pages.jsonl", pages)) == expected
    items = [thread for page in pages for thread in page["items"]]
    assert read(write_json(tmp_path / "items.json", items)) == expected


def test_api_comment_without_text_names_its_path(tmp_path: Path) -> None:
    top = api_comment("Ugw1", "x")
    reply = api_comment("Ugw1.r1", "y")
    del reply["snippet"]["textOriginal"], reply["snippet"]["textDisplay"]
    page = threads_page([api_thread(api_comment("Ugw0", "ok"), []), api_thread(top, [reply])])
    with pytest.raises(InputError) as info:
        read(write_json(tmp_path / "t.json", page))
    assert str(info.value).startswith(
        "t.json: items[1].replies.comments[0].snippet has no text field: expected one of "
        "textOriginal, textDisplay; found keys: channelId, videoId"
    )


def test_api_page_in_an_array_names_its_element(tmp_path: Path) -> None:
    page = threads_page([{"kind": "youtube#commentThread", "id": "T"}])  # no part=snippet
    with pytest.raises(InputError, match=r"^p\.json record 1: items\[0\] has no snippet obj"):
        read(write_json(tmp_path / "p.json", [threads_page([]), page]))


def test_items_of_plain_comment_objects(tmp_path: Path) -> None:
    path = write_json(tmp_path / "scraped.json", {"items": [{"cid": "a", "text": "x"}, "y"]})
    assert read(path) == [Record("a", "x"), Record("1", "y")]


def test_top_level_comment_without_id_takes_the_thread_id(tmp_path: Path) -> None:
    thread = api_thread(api_comment("UgThread", "hello"), [])
    del thread["snippet"]["topLevelComment"]["id"]
    assert read(write_json(tmp_path / "t.json", threads_page([thread]))) == [
        Record("UgThread", "hello")
    ]


# --- files that are not comment files ---------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    """Empty: maybe a mistake, maybe a downloader that created the file and is still fetching the
    first page; incomplete, so that the producer waits before failing it."""
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    with pytest.raises(IncompleteInputError, match=r"^empty\.json: file is empty"):
        read(path)


@pytest.mark.parametrize("content", [b"  \n\r\n\t", b"\xef\xbb\xbf\n"])
def test_whitespace_only_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(content)
    with pytest.raises(
        IncompleteInputError, match=r"^blank\.csv: file is empty \(only whitespace\)"
    ):
        read(path)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (b"PK\x03\x04\x14\x00\x06\x00", "ZIP archive"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        ('[{"id": "a"}]'.encode("utf-16"), "UTF-16"),
        (b'[{"id": "a", "comment": "\xff\xfe"}]', "not UTF-8 text"),
    ],
)
def test_binary_and_non_utf8_files(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "comments.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=why):
        read(path)


def test_non_utf8_byte_deep_in_a_json_document(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    body = b",\n".join(b'{"id": "a", "comment": "%s"}' % (b"x" * 100) for _ in range(1000))
    path.write_bytes(b"[\n" + body + b',\n{"id": "b", "comment": "\xe9"}\n]\n')
    with pytest.raises(InputError, match=r"^doc\.json line 1002: not UTF-8 text \(byte 0xe9"):
        read(path)


def test_non_utf8_file_message(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"cid,text\na,ok\nb,\x93quoted\x94\n")
    with pytest.raises(InputError) as info:
        read(path)
    assert str(info.value) == (
        "c.csv line 3: not UTF-8 text (byte 0x93 cannot be decoded): is this a comment file? "
        "If it is, save it as UTF-8 JSON, JSON Lines or CSV"
    )


# --- limits -----------------------------------------------------------------------------------


def test_too_long_comment_names_record_limit_and_setting(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "c.json", [{"id": "ok", "comment": "x" * 10}, {"id": "big", "comment": "x" * 11}]
    )
    assert isinstance(InputTooLargeError("x"), InputError)
    with pytest.raises(InputTooLargeError) as info:
        read(path, max_comment_chars=10)
    assert str(info.value) == (
        "c.json record 1 (id 'big'): the comment is 11 characters long, over the limit of 10 "
        "(EMOTIONS_MAX_COMMENT_CHARS); shorten it or raise EMOTIONS_MAX_COMMENT_CHARS"
    )
    assert read(path, max_comment_chars=11)[1] == Record("big", "x" * 11)


def test_too_long_comment_in_json_lines_and_csv(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "c.jsonl", [{"text": "short"}, {"text": "é" * 6}])
    with pytest.raises(InputTooLargeError, match=r"^c\.jsonl line 2: the comment is 6 char"):
        read(jsonl, max_comment_chars=5)
    table = write_csv(tmp_path / "c.csv", [{"cid": "a", "text": "y" * 300_000}])
    with pytest.raises(InputTooLargeError, match="EMOTIONS_MAX_COMMENT_CHARS"):
        read(table, max_comment_chars=1000)
    with pytest.raises(InputTooLargeError, match=r"^c\.csv line 2 \(id 'a'\): the comment is"):
        read(write_csv(tmp_path / "c.csv", [{"cid": "a", "text": "y" * 12}]), max_comment_chars=3)


def test_errors_are_permanent(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", {"nope": 1})
    with pytest.raises(PermanentError):
        read(path)


# --- scale and laziness -----------------------------------------------------------------------


def test_large_json_lines_file_streams_in_order(tmp_path: Path) -> None:
    count = 50_000
    path = tmp_path / "big.json"
    path.write_bytes(
        b"".join(
            orjson.dumps(downloader_comment(f"c{i}", f"comment {i} {EMOJI}")) + b"\n"
            for i in range(count)
        )
    )
    records = read(path)
    assert len(records) == count
    assert records[0] == Record("c0", f"comment 0 {EMOJI}")
    assert records[-1] == Record(f"c{count - 1}", f"comment {count - 1} {EMOJI}")


def test_nothing_is_read_until_iterated(tmp_path: Path) -> None:
    records = iter_records(tmp_path / "missing.json")  # no error yet: a lazy generator
    with pytest.raises(FileNotFoundError):
        next(records)


def test_the_texts_path_decides_by_the_same_keys() -> None:
    """emotions.formats.texts and .pages decode only the keys that decide a value: the text
    fields, in their order, the Data API keys of the full path, and the thread's kind."""
    assert Obj.__struct_fields__[: len(TEXT_FIELDS)] == TEXT_FIELDS
    assert set(Obj.__struct_fields__) >= API_KEYS
    assert Snippet.__struct_fields__[:2] == SNIPPET_TEXT_FIELDS
    assert TextFields.__struct_fields__ == TEXT_FIELDS
    assert issubclass(PlainDoc, TextFields) and issubclass(Page, TextFields)
    assert get_args(get_type_hints(Thread)["kind"]) == (THREAD_KIND,)


def test_json_lines_texts_match_the_records_on_every_kind_of_line(tmp_path: Path) -> None:
    """Plain lines and every line the fast path hands to the full path, in one file."""
    lines = [
        b'\xef\xbb\xbf{"cid": "a", "text": "first, after a BOM"}',
        b'{"id": 12345678901234567890123, "comment": "big int id"}',
        b'{"id": 1.5, "comment": "float id"}',
        b'{"cid": "b", "text": 12345678901234567890123}',
        b'{"cid": "c", "text": 1.25}',
        b'{"cid": "d", "text": null}',
        b'{"comment": "comment first", "text": "not this one"}',
        b'{"text": "dup", "text": "last one wins"}',
        b'"a bare string"',
        b"",
        b"   ",
        b'{"cid": "e", "text": "crlf"}\r',
        b'{"cid": {"nested": [1, 2]}, "text": "an object id"}',
        orjson.dumps(threads_page([api_thread(api_comment("t1", "top"), [])])),
        b'{"kind": "youtube#comment", "id": "k", "snippet": {"textOriginal": "api comment"}}',
        b'{"cid": "f", "text": "' + "\u00e9\u00e8 \U0001f602".encode() + b'"}',
        b'{"cid": "g", "text": "escaped \\u00e9 \\n \\"quote\\""}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    records = read(path)  # asserts the texts path gives the same texts
    assert [r.comment for r in records][:8] == [
        "first, after a BOM",
        "big int id",
        "float id",
        "12345678901234567890123",
        "1.25",
        "",
        "comment first",
        "last one wins",
    ]


@pytest.mark.parametrize(
    "line",
    [b'{"cid": "a", "text": ["a list"]}', b'{"cid": "a"}', b"[1, 2]", b'{"cid": "a", "text": "x'],
)
def test_json_lines_texts_give_the_full_paths_error(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"cid": "ok", "text": "fine"}\n' + line + b"\n")
    with pytest.raises(InputError):
        read(path)  # asserts the same error type and message from both paths


def test_json_lines_texts_refuse_a_comment_over_the_limit_as_the_records_do(
    tmp_path: Path,
) -> None:
    path = write_jsonl(tmp_path / "long.jsonl", [downloader_comment("a", "x" * 50)])
    with pytest.raises(InputTooLargeError):
        read(path, max_comment_chars=10)


@pytest.mark.parametrize(
    "line", [b'{"author": "\xff", "text": "a"}', b'{"votes": 1e400, "text": "a"}']
)
def test_what_the_texts_path_lets_through_the_records_refuse(tmp_path: Path, line: bytes) -> None:
    """The two things msgspec does not check in keys it skips (documented in
    emotions.formats.texts), past the head that detect() checks as UTF-8: such a file passes
    the check; the full readers refuse it, with their error."""
    path = tmp_path / "odd.jsonl"
    good = b'{"cid": "ok", "text": "fine"}\n'
    count = HEAD_BYTES // len(good) + 1
    path.write_bytes(good * count + line + b"\n")
    assert texts(path) == ["fine"] * count + ["a"]
    with pytest.raises(InputError, match=f"line {count + 1}"):
        list(iter_records(path))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_fast_path_decides_the_tools_own_files_by_itself(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files as the tools write them (bench.inputs: the downloader's eleven fields, Data API
    pages with their snippet fields, the downloader's CSV with quoted fields) are the common
    case: decided by the fewest-fields path alone, with the records' texts, never handed to
    another path."""
    monkeypatch.setattr(csvread, "_by_reader", None)  # CSV: never csv.reader
    suffix, writer = FORMATS[name]
    path = tmp_path / f"{name}{suffix}"
    writer(path, 300, 3)
    expected = [r.comment for r in iter_records(path)]
    raw = path.read_bytes()
    fmt, body = detect(path), raw.removeprefix(b"\xef\xbb\xbf")
    if fmt is Format.JSON_DOCUMENT:
        got = plain_document_texts(body, 1_000_000)
    elif fmt is Format.CSV:
        got = [t for _, texts in csv_columns(io.BytesIO(raw), 1_000_000) for t in texts]
    else:
        lines = body.splitlines(keepends=True)
        got = plain_texts(lines, 1_000_000) or texts_of_pages(lines, 1_000_000)
    assert got == expected


def _page_line(**change: Any) -> dict[str, Any]:
    page = threads_page(
        [
            api_thread(api_comment("T1", "top"), [api_comment("T1.1", "r1")]),
            api_thread(api_comment("T2", "two"), []),
        ]
    )
    page.update(change)
    return page


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param({"text": "the page is a comment"}, id="page-with-text-field"),
        pytest.param({"items": []}, id="no-items"),
        pytest.param({"items": [api_comment("c1", "comments.list")]}, id="comment-items"),
        pytest.param({"items": ["a bare string item"]}, id="string-item"),
        pytest.param(
            {
                "items": [
                    api_thread(api_comment("T3", "x"), [api_comment("r", "y", original=False)])
                ]
            },
            id="reply-without-textOriginal",
        ),
        pytest.param(
            {"items": [{**api_thread(api_comment("T4", "x"), []), "replies": "3"}]},
            id="replies-a-count",
        ),
        pytest.param(
            {"items": [{**api_thread(api_comment("T5", "x"), []), "replies": {"comments": None}}]},
            id="replies-null",
        ),
        pytest.param(
            {"items": [{**api_thread(api_comment("T6", "x"), []), "kind": "youtube#other"}]},
            id="thread-of-another-kind",
        ),
        pytest.param(
            {"items": [api_thread({**api_comment("T7", "x"), "id": 7}, [])]}, id="integer-id"
        ),
        pytest.param(
            {"items": [api_thread({"kind": "youtube#comment", "id": "T8"}, [])]},
            id="no-snippet",
        ),
    ],
)
def test_pages_the_typed_path_does_not_take_read_as_the_records(
    tmp_path: Path, odd: dict[str, Any]
) -> None:
    """Each odd page between ordinary ones, in JSON Lines (after a block the typed path read)
    and as a whole document: the same texts as the records, or the same error."""
    plain = [_page_line() for _ in range(3)]
    for path, pages in (
        (tmp_path / "odd.jsonl", [*plain, _page_line(**odd), *plain]),
        (tmp_path / "odd.json", _page_line(**odd)),
    ):
        if path.suffix == ".jsonl":
            write_jsonl(path, pages)
        else:
            write_json(path, pages)
        with contextlib.suppress(InputError):
            read(path)  # asserts the texts path gives the same texts or the same error


def test_pages_with_a_reply_over_the_limit_give_the_records_error(tmp_path: Path) -> None:
    long = _page_line(items=[api_thread(api_comment("T", "x"), [api_comment("R", "y" * 50)])])
    path = write_jsonl(tmp_path / "long.jsonl", [_page_line(), long])
    with pytest.raises(InputTooLargeError):
        read(path, max_comment_chars=10)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param([{"comment": "c", "text": "t"}, {"text": "only text"}], id="fields-mixed"),
        pytest.param([{"comment": None}], id="null-comment"),
        pytest.param([{"text": "t", "kind": "youtube#comment", "snippet": {}}], id="kind"),
        pytest.param(["a string", {"text": "t"}], id="string-element"),
        pytest.param({"comments": [{"text": "t"}], "text": "doc text"}, id="doc-is-a-comment"),
        pytest.param({"comments": [{"text": "t"}], "items": [1]}, id="comments-and-items"),
        pytest.param({"items": [{"text": "plain item"}]}, id="plain-items"),
        pytest.param({"other": 1}, id="unknown-shape"),
    ],
)
def test_documents_the_fewest_fields_path_does_not_take_read_as_the_records(
    tmp_path: Path, content: Any
) -> None:
    path = write_json(tmp_path / "doc.json", content)
    with contextlib.suppress(InputError):
        read(path)  # asserts the texts path gives the same texts or the same error


@pytest.mark.parametrize(
    ("odd", "error"),
    [
        pytest.param(b"\r\n", None, id="blank-line"),
        pytest.param(b"x9,short\r\n", InputError, id="short-row"),
        pytest.param(b"x9,long,0,extra\r\n", InputError, id="long-row"),
        pytest.param(b"x9,long,0,,\r\n", None, id="empty-extra-cells"),
        pytest.param(b'x9,"a ""quoted"" text, with comma",0\r\n', None, id="quoted"),
        pytest.param(b"x9," + b"y" * 50 + b",0\r\n", InputTooLargeError, id="over-the-limit"),
        pytest.param(b"x9,caf\xe9,0\r\n", InputError, id="not-utf8"),
        pytest.param(b'x9,"x"y,0\r\n', InputError, id="malformed"),
        pytest.param(b'x9,"never closed,0\r\n', IncompleteInputError, id="open-quote-at-end"),
        pytest.param(b"x9,unfinished", IncompleteInputError, id="unfinished-last-row"),
    ],
)
def test_csv_rows_after_a_block_read_by_the_columns_path(
    tmp_path: Path, odd: bytes, error: type[Exception] | None
) -> None:
    """An odd row after more than a block of plain rows (the first block already handed on):
    the stream is read again by the records' path, which gives the remaining texts once, or
    its error."""
    rows = [b"c%d,text %d,0\r\n" % (i, i) for i in range(1500)]
    after = rows[:10] if odd.endswith(b"\n") else []
    path = tmp_path / "odd.csv"
    path.write_bytes(b"\xef\xbb\xbfcid,text,votes\r\n" + b"".join([*rows, odd, *after]))
    if error is not None:
        with pytest.raises(error):
            read(path, max_comment_chars=40)  # the same error on both paths
        return
    records = read(path, max_comment_chars=40)  # the same texts on both paths
    assert len(records) == 1500 + (odd.strip() != b"") + len(after)


def test_csv_texts_from_a_stream_that_cannot_seek(tmp_path: Path) -> None:
    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    data = b"cid,text\n" + b"a,one\n" * 3 + b"b,short,row,x\n"
    path = tmp_path / "p.csv"
    path.write_bytes(data)
    with pytest.raises(InputError) as expected:
        list(iter_records(path))
    with pytest.raises(InputError) as got:
        [t for block in read_texts(Pipe(data), "p.csv", Format.CSV) for t in block]
    assert str(got.value) == str(expected.value)


def test_what_the_csv_texts_path_lets_through_the_records_refuse(tmp_path: Path) -> None:
    """A byte that is not UTF-8 in a column the check does not decode (documented in
    emotions.formats.fastcsv): the file passes the check, as the assembly reads it too; the
    full reader refuses it, with its error. In the text column it is refused by both."""
    path = tmp_path / "odd.csv"
    good = b"a,fine,x\r\n"
    count = HEAD_BYTES // len(good) + 1  # past the head that detect() checks as UTF-8
    path.write_bytes(b"cid,text,author\r\n" + good * count + b"b,also fine,caf\xe9\r\n")
    assert texts(path) == ["fine"] * count + ["also fine"]
    with pytest.raises(InputError, match=f"line {count + 2}: not UTF-8"):
        list(iter_records(path))
    path.write_bytes(b"cid,text,author\r\n" + good * count + b"b,caf\xe9,x\r\n")
    with pytest.raises(InputError, match=f"line {count + 2}: not UTF-8"):
        read(path)
