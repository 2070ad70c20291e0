"""The feeder on line-based files (JSON Lines, CSV) sends each chunk read from its own bytes
(emotions.spans): chunk ``k``'s message holds exactly chunk ``k``'s texts of the full parse,
in a window at a time, after a heal, and never for a file changed since it was checked; JSON
documents keep the streamed reader. Real producer, real redis-server, no worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.inputs import FORMATS
from emotions.chunking import chunks
from emotions.constants import INFERENCE_QUEUE, SUPERSEDED
from emotions.formats import iter_records
from producer.daemon import Producer
from tests.producer.rig import Rig

STALL = 0.05
CHUNK = 7


def texts_by_chunk(path: Path) -> list[list[str]]:
    return [[r.comment for r in c] for c in chunks(iter_records(path), CHUNK, 1 << 20)]


def take(rig: Rig, name: str, n: int, **settings: object) -> tuple[Producer, str, Path]:
    suffix, writer = FORMATS[name]
    path = rig.input / f"{name}{suffix}"
    writer(path, n, 9)
    p = rig.producer(chunk_size=CHUNK, stall_seconds=STALL, **settings)
    p.take([path])
    (job,) = p.tracker.jobs
    return p, job, path


@pytest.mark.parametrize("name", ["downloader-jsonl", "downloader-csv", "api-threads"])
def test_each_chunk_message_holds_its_own_texts_window_by_window(rig: Rig, name: str) -> None:
    p, job, path = take(rig, name, 150, window=4)
    assert p.tracker.jobs[job].sub.layout is not None
    assert p.tracker.jobs[job].sub.layout.sliced
    expected = texts_by_chunk(path)
    got: dict[int, list[str]] = {}
    while len(got) < len(expected):
        p.tracker.poll()
        p.tracker.feed()
        assert len(rig.chunk_args()) <= 4
        for args in rig.pop():
            assert args[0] == job and args[1] not in got
            got[args[1]] = args[2]
            rig.complete(args)
    assert [got[k] for k in range(len(expected))] == expected


def test_a_heal_sends_the_missing_chunks_texts(rig: Rig) -> None:
    p, _job, path = take(rig, "downloader-jsonl", 40, window=100)
    p.tracker.feed()
    expected = texts_by_chunk(path)
    assert rig.work(n=2) == [0, 0]  # chunks 0 and 1 are done...
    rig.client.delete(INFERENCE_QUEUE)  # ...and the other messages were lost
    p.tracker.poll()
    time.sleep(STALL * 1.5)
    p.tracker.poll()
    args = rig.chunk_args()
    assert [a[1] for a in args] == list(range(2, len(expected)))
    assert [a[2] for a in args] == expected[2:]


def test_a_file_changed_after_its_check_is_superseded_not_sent(rig: Rig) -> None:
    p, job, path = take(rig, "downloader-jsonl", 40, window=2)
    p.tracker.feed()
    assert [a[1] for a in rig.chunk_args()] == [0, 1]
    path.write_bytes(b'{"cid": "x", "text": "other"}\n' * 3)
    rig.work()
    p.tracker.poll()
    p.tracker.feed()
    assert rig.chunk_args() == []
    assert rig.store.meta(job)["state"] == SUPERSEDED


def test_a_json_document_is_fed_from_the_streamed_reader(rig: Rig) -> None:
    p, job, path = take(rig, "json-array", 30, window=100)
    layout = p.tracker.jobs[job].sub.layout
    assert layout is not None and not layout.sliced
    p.tracker.feed()
    assert [a[2] for a in rig.chunk_args()] == texts_by_chunk(path)
