"""The feeder sends each chunk's texts from the spool its check wrote (producer.spool): chunk
``k``'s message holds exactly chunk ``k``'s texts of the full parse, in every format, a window
at a time, after a heal and after a restart (which checks the file again); the spool is an
unlinked file, closed when its job ends; a spool that cannot be written never fails a file.
Real producer, real redis-server, no worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.inputs import FORMATS
from emotions.chunking import chunks
from emotions.constants import INFERENCE_QUEUE, QUEUED
from emotions.formats import iter_records
from producer.daemon import Producer
from tests.producer.rig import Rig

STALL = 0.05
CHUNK = 7


def texts_by_chunk(path: Path) -> list[list[str]]:
    return list(chunks((r.comment for r in iter_records(path)), CHUNK, 1 << 20))


def take(rig: Rig, name: str, n: int, **settings: object) -> tuple[Producer, str, Path]:
    suffix, writer = FORMATS[name]
    path = rig.input / f"{name}{suffix}"
    writer(path, n, 9)
    p = rig.producer(chunk_size=CHUNK, stall_seconds=STALL, **settings)
    p.take([path])
    (job,) = p.tracker.jobs
    return p, job, path


def spools_open(folder: Path) -> int:
    """This process's open files in ``folder`` (a spool is unlinked at once: only
    /proc/self/fd still sees it), and no file is left there by name."""
    assert not any(folder.iterdir())
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += str(fd.readlink()).startswith(f"{folder}/")
        except OSError:
            continue
    return count


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_chunk_message_holds_its_own_texts_window_by_window(rig: Rig, name: str) -> None:
    p, job, path = take(rig, name, 150, window=4)
    assert p.tracker.jobs[job].layout is not None
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


def test_a_file_changed_after_its_check_is_still_sent_as_checked(rig: Rig) -> None:
    """The spool holds what the check read; the assembly's digest check, not the feeder,
    decides what a change means (tests/producer/test_tracker.py follows it there)."""
    p, job, path = take(rig, "downloader-jsonl", 40, window=100)
    expected = texts_by_chunk(path)
    path.write_bytes(b'{"cid": "x", "text": "other"}\n' * 3)
    p.tracker.feed()
    assert [a[2] for a in rig.chunk_args()] == expected
    assert rig.store.meta(job)["state"] == QUEUED


@pytest.mark.parametrize("name", ["downloader-jsonl", "api-threads", "json-array"])
def test_a_restarted_producer_checks_the_file_again_and_sends_the_same_chunks(
    rig: Rig, name: str
) -> None:
    p, job, path = take(rig, name, 60, window=2)
    p.tracker.feed()
    expected = texts_by_chunk(path)
    first = rig.chunk_args()
    assert [a[1] for a in first] == [0, 1]
    again = rig.producer(chunk_size=CHUNK, stall_seconds=STALL, window=100)
    again.take([path])
    assert again.tracker.jobs[job].layout is None  # resumed: checked again when first fed
    again.tracker.feed()
    args = rig.chunk_args()
    assert [a[1] for a in args] == list(range(len(expected)))
    assert [a[2] for a in args] == expected
    assert again.tracker.jobs[job].layout is not None


def test_the_spool_is_an_unlinked_file_closed_when_the_job_ends(rig: Rig) -> None:
    spool = rig.root / "spool"
    spool.mkdir()
    p, job, _ = take(rig, "downloader-jsonl", 20, window=100, spool_dir=spool)
    assert spools_open(spool) == 1
    p.tracker.feed()
    assert spools_open(spool) == 1  # all sent: kept for heals until the job ends
    while rig.chunk_args():
        rig.work(rig.apps[-1])
    p.tracker.poll()  # labels all stored: the assembly is queued, the job still in flight
    assert job in p.tracker.jobs and spools_open(spool) == 1
    rig.store.supersede(job, "ended for the test")
    p.tracker.poll()
    assert p.tracker.jobs == {}
    assert spools_open(spool) == 0


def test_a_spool_folder_that_is_missing_makes_files_wait_not_fail(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """No spool can be written (its folder is missing, the disk is full): not the input's
    fault. The file is put back first in line, the loop says why, and once the spool can be
    written the file goes through."""
    spool = rig.root / "spool"
    suffix, writer = FORMATS["downloader-jsonl"]
    path = rig.input / f"a{suffix}"
    writer(path, 20, 1)
    p = rig.producer(chunk_size=CHUNK, spool_dir=spool, settle_seconds=0)
    p.ready.push(path, 0)
    p.step()
    assert p.tracker.jobs == {}
    assert not any(rig.failed.iterdir())
    assert "no spool can be created in" in caplog.text and "EMOTIONS_SPOOL_DIR" in caplog.text
    assert rig.ledger.get(path.name) is None  # no job, no failure: it waits
    spool.mkdir()
    p.step()
    (job,) = p.tracker.jobs
    assert [a[1] for a in rig.chunk_args()] == [0, 1, 2]
    assert rig.store.meta(job)["records"] == "20"
