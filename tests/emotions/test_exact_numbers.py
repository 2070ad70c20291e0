"""Ids and texts that orjson would parse inexactly (integers beyond 64 bits) come out exactly,
in every JSON shape, each record once, whether the inexact value comes first, in the middle or
inside an array id; values orjson parses exactly take the fast path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from emotions.formats import iter_records
from emotions.formats.records import InexactNumber, RecordMaker

BIG = 12345678901234567890123
HUGE_NEGATIVE = -(2**70) - 3


def raw_json(value: Any) -> bytes:
    """JSON with exact big integers (orjson refuses to write them; the standard library can)."""
    import json

    return json.dumps(value, ensure_ascii=False).encode()


def ids(path: Path) -> list[Any]:
    return [r.id for r in iter_records(path)]


def test_json_lines_big_integer_ids_exact_and_each_record_once(tmp_path: Path) -> None:
    lines = [
        {"cid": "a", "text": "first"},
        {"cid": BIG, "text": "big"},
        {"cid": "b", "text": "after"},
        {"cid": HUGE_NEGATIVE, "text": "negative"},
        {"cid": [1, 2**80], "text": "array id"},
    ]
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"".join(raw_json(line) + b"\n" for line in lines))
    records = list(iter_records(path))
    assert [r.id for r in records] == ["a", BIG, "b", HUGE_NEGATIVE, [1, 2**80]]
    assert [r.comment for r in records] == ["first", "big", "after", "negative", "array id"]
    assert type(records[1].id) is int


def test_a_big_integer_text_is_its_exact_decimal_string(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(raw_json({"cid": "a", "text": BIG}) + b"\n")
    (record,) = iter_records(path)
    assert record.comment == str(BIG)


def test_json_array_with_a_big_id_in_the_middle_gives_every_record_once(tmp_path: Path) -> None:
    document: list[dict[str, Any]] = [{"id": f"c{i}", "comment": f"t{i}"} for i in range(50)]
    document[30] = {"id": BIG, "comment": "big"}
    document.append({"comment": "no id: its position"})
    path = tmp_path / "a.json"
    path.write_bytes(raw_json(document))
    got = list(iter_records(path))
    assert [r.id for r in got] == [
        *(f"c{i}" for i in range(30)),
        BIG,
        *(f"c{i}" for i in range(31, 50)),
        "50",
    ]
    assert got[30].comment == "big" and got[-1].comment == "no id: its position"


def test_api_page_lines_with_a_big_reply_id(tmp_path: Path) -> None:
    def comment(cid: Any, text: str) -> dict[str, Any]:
        return {"kind": "youtube#comment", "id": cid, "snippet": {"textOriginal": text}}

    thread = {
        "kind": "youtube#commentThread",
        "id": "t1",
        "snippet": {"topLevelComment": comment("t1", "top")},
        "replies": {"comments": [comment("r1", "one"), comment(BIG, "two")]},
    }
    page = {"kind": "youtube#commentThreadListResponse", "items": [thread]}
    path = tmp_path / "pages.json"
    path.write_bytes(raw_json(page) + b"\n" + raw_json(page) + b"\n")
    assert ids(path) == ["t1", "r1", BIG, "t1", "r1", BIG]


def test_a_float_id_stays_a_float(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"cid": 1.5, "text": "a"}\n{"cid": 2, "text": "b"}\n')
    assert ids(path) == [1.5, 2]


def test_only_values_orjson_may_have_changed_ask_for_an_exact_parse() -> None:
    maker = RecordMaker(100)
    assert maker.make("a", "text", lambda: "x").id == "a"
    assert maker.make(2**63, "text", lambda: "x").id == 2**63  # orjson keeps it: an int
    for value in (1.2e22, [1], {"k": 1}):
        with pytest.raises(InexactNumber):
            maker.make(value, "text", lambda: "x")
    with pytest.raises(InexactNumber):
        maker.make("a", 1.2e22, lambda: "x")
    maker.exact = True
    assert maker.make(1.5, 2.5, lambda: "x") == (1.5, "2.5")


def test_orjson_really_loses_the_digits_this_guards_against() -> None:
    assert orjson.loads(str(BIG).encode()) != BIG
