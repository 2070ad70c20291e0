"""emotions.output: which name an output gets (and the one used when that name is taken), and
the exact bytes of the output file: records rendered one chunk at a time, ids kept exactly
(integers beyond 64 bits included), spliced into one JSON array."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from emotions.constants import NAME_BYTES
from emotions.errors import OutputWriteError
from emotions.formats import Record
from emotions.output import (
    alternative_name,
    job_output_path,
    json_array,
    output_name,
    render,
    render_columns,
)


def nbytes(name: str) -> int:
    return len(name.encode("utf-8", "surrogateescape"))


def test_alternative_name_adds_a_hash_of_the_whole_input_name() -> None:
    digest = hashlib.sha256(b"a.csv").hexdigest()[:8]
    assert output_name("a.csv") == output_name("a.json") == "a.json"
    assert alternative_name("a.csv") == f"a~{digest}.json"
    assert alternative_name("a.csv") != alternative_name("a.json")
    assert alternative_name("a.csv") != output_name("a.csv")


def test_alternative_name_of_a_long_name_fits_and_stays_distinct() -> None:
    prefix = "日本語" * 80
    a, b = alternative_name(prefix + "a.csv"), alternative_name(prefix + "b.csv")
    assert a != b
    assert nbytes(a) <= NAME_BYTES and nbytes(b) <= NAME_BYTES
    assert a.endswith(".json") and b.endswith(".json")


def test_render_writes_exactly_id_comment_emotion() -> None:
    records = [Record("a1", "I love it 😂"), Record(7, "هذا رائع"), Record("x", "")]
    raw = render(records, ["joy", "admiration", "neutral"])
    lines = raw.split(b",\n")
    assert len(lines) == 3
    assert [json.loads(line) for line in lines] == [
        {"id": "a1", "comment": "I love it 😂", "emotion": "joy"},
        {"id": 7, "comment": "هذا رائع", "emotion": "admiration"},
        {"id": "x", "comment": "", "emotion": "neutral"},
    ]
    assert list(json.loads(lines[0])) == ["id", "comment", "emotion"]  # in that order
    assert "هذا رائع".encode() in raw and b"\\u" not in raw  # non-ASCII written as is


def test_render_refuses_a_label_count_that_does_not_match() -> None:
    with pytest.raises(ValueError):
        render([Record(1, "a"), Record(2, "b")], ["joy"])


@pytest.mark.parametrize(
    "rid",
    [2**64, 2**70 + 1, -(2**65) - 3, 12345678901234567890123, [1, 2**80], {"k": 2**99}],
)
def test_an_integer_id_beyond_64_bits_comes_out_exactly(rid: object) -> None:
    records = [Record("before", "a"), Record(rid, 'هذا 😂 "quoted"\n'), Record(2**63 - 1, "c")]
    body = b"".join(json_array([render(records, ["joy", "neutral", "anger"])]))
    out = json.loads(body)
    assert [r["id"] for r in out] == ["before", rid, 2**63 - 1]
    assert out[1]["comment"] == 'هذا 😂 "quoted"\n'
    assert "هذا 😂".encode() in body
    # As digits, never as a float: a parser that keeps numbers as decimals sees an integer.
    exact = json.loads(body, parse_float=Decimal)
    assert exact[1]["id"] == rid


def test_a_float_id_stays_a_float() -> None:
    body = b"".join(json_array([render([Record(1.5, "a")], ["joy"])]))
    assert json.loads(body) == [{"id": 1.5, "comment": "a", "emotion": "joy"}]


def test_json_array_splices_chunks_in_order() -> None:
    first = render([Record(1, "a"), Record(2, "b")], ["joy", "anger"])
    second = render([Record(3, "c")], ["neutral"])
    body = b"".join(json_array([first, second]))
    assert body == b"[\n" + first + b",\n" + second + b"\n]\n"
    assert [r["id"] for r in json.loads(body)] == [1, 2, 3]
    assert len(body.split(b"\n")) == 6  # "[", one line per record, "]", end of file


def test_json_array_of_nothing_is_an_empty_array() -> None:
    assert b"".join(json_array([])) == b"[\n]\n"
    assert b"".join(json_array([b"", b""])) == b"[\n]\n"
    assert json.loads(b"".join(json_array([]))) == []


def test_json_array_skips_empty_parts_without_a_stray_comma() -> None:
    part = render([Record(1, "a")], ["joy"])
    body = b"".join(json_array([b"", part, b"", part, b""]))
    assert json.loads(body) == [{"id": 1, "comment": "a", "emotion": "joy"}] * 2


def test_json_array_is_a_stream() -> None:
    """The output is written piece by piece: nothing forces the parts into memory at once."""
    produced: list[int] = []

    def parts() -> Iterator[bytes]:
        for i in range(3):
            produced.append(i)
            yield render([Record(i, "x")], ["joy"])

    stream = json_array(parts())
    assert next(stream) == b"[\n"
    assert produced == []
    next(stream)
    assert produced == [0]


def test_a_job_output_path_is_the_producers_absolute_path_whatever_the_workers_folder(
    tmp_path: Path,
) -> None:
    producers = tmp_path / "producer-out"
    workers = tmp_path / "worker-out"
    recorded = str(producers / "a.json")
    assert job_output_path(recorded, workers) == producers / "a.json"
    # A job recorded by an earlier version holds a bare name: the worker's folder.
    assert job_output_path("a.json", workers) == workers.resolve() / "a.json"
    for bad in ("../a.json", str(producers / "..")):
        with pytest.raises(OutputWriteError):
            job_output_path(bad, workers)


BIG = 123456789012345678901234567890


@pytest.mark.parametrize(
    "ids",
    [
        ["a1", 7, -(1 << 63), (1 << 64) - 1, "x"],  # the fast shape: one dumps, then split
        ["a", BIG, "c", 4, "e"],  # beyond 64 bits: orjson refuses, render keeps it exact
        ["a", [1, {"id": 2}], "c", {"id": {"id": 3}}, "e"],  # ids holding the boundary
        ["a", 1.5, True, None, "e"],
    ],
)
def test_render_columns_writes_the_bytes_render_writes(ids: list[object]) -> None:
    texts = ['},{"id":', "I love it 😂", 'quote " and \\ back', "", "هذا رائع"]
    labels = ["joy", "admiration", "neutral", "anger", "joy"]
    raw = render_columns(ids, texts, iter(labels))
    assert raw == render([Record(i, t) for i, t in zip(ids, texts, strict=True)], labels)
    lines = raw.split(b"\n")
    assert len(lines) == 5  # one record per line, whatever the ids and texts hold
    assert [json.loads(line.rstrip(b",")) for line in lines] == [
        {"id": i, "comment": t, "emotion": e} for i, t, e in zip(ids, texts, labels, strict=True)
    ]


def test_render_columns_keeps_an_integer_beyond_64_bits_exactly() -> None:
    raw = render_columns(["a", BIG], ["x", "y"], ["joy", "joy"])
    assert b'"id":123456789012345678901234567890,' in raw
    assert json.loads(b"[" + raw + b"]")[1]["id"] == BIG


def test_render_columns_of_nothing_and_of_a_count_mismatch() -> None:
    assert render_columns([], [], []) == b""
    with pytest.raises(ValueError):
        render_columns(["a", "b"], ["x", "y"], ["joy"])


def test_render_columns_refuses_a_lone_surrogate_as_render_does() -> None:
    """No reader makes one (orjson, msgspec and the CSV decoder refuse them), but should one
    arrive, it fails the same way, never written as something else."""
    for write in (
        lambda: render_columns(["a"], ["\ud800"], ["joy"]),
        lambda: render([Record("a", "\ud800")], ["joy"]),
    ):
        with pytest.raises(UnicodeEncodeError):
            write()


def test_render_columns_writes_every_code_point_as_render_does() -> None:
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    texts = [everything, everything[::-1]]
    raw = render_columns(["a", 1], texts, ["joy", "joy"])
    assert raw == render([Record("a", texts[0]), Record(1, texts[1])], ["joy", "joy"])
    assert [r["comment"] for r in json.loads(b"[" + raw + b"]")] == texts
