"""producer.tracker.Tracker, driven by hand on a real redis-server with a real Celery app and no
worker: the tests play the worker's part (and the faults) between polls, with a tiny stall
time. A job whose chunk messages were lost is healed (the missing chunks are sent again), work
still waiting in a queue is never healed nor failed, a job that stays stuck after
``MAX_HEALS`` heals fails with a report naming its missing chunks, and the end of an old job
never decides about newer content of its file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from emotions.constants import (
    DONE,
    FAILED,
    INFERENCE_QUEUE,
    MAX_HEALS,
    QUEUED,
    RESULTS_QUEUE,
    SUPERSEDED,
    job_key,
    parts_key,
    starts_key,
)
from emotions.redisfaults import refusal_code
from producer.daemon import Producer
from tests.producer.rig import LABELS, NAME, Rig, comments
from worker.assembly import assemble

STALL = 0.05  # seconds without progress before a job is supervised


def start(rig: Rig, records: list[Any], **settings: Any) -> tuple[Producer, str, Path]:
    """A producer that took one file and sent its first window of chunks (one comment each)."""
    p = rig.producer(**{"stall_seconds": STALL, "chunk_size": 1, **settings})
    path = rig.write(records)
    p.take([path])
    (job,) = p.tracker.jobs
    p.tracker.feed()
    return p, job, path


def stalled_poll(p: Producer) -> None:
    """Let a stall period pass without progress, then poll."""
    time.sleep(STALL * 1.5)
    p.tracker.poll()


def report(rig: Rig, name: str = NAME) -> dict[str, Any]:
    return orjson.loads((rig.failed / f"{name}.error.json").read_bytes())


# --- healing ---------------------------------------------------------------------------------


def test_lost_chunk_messages_are_sent_again(rig: Rig) -> None:
    records = comments(3)
    p, job, _ = start(rig, records)
    assert rig.sent(job) == [0, 1, 2]
    assert rig.work(n=1) == [0]  # a worker finished chunk 0...
    rig.client.delete(INFERENCE_QUEUE)  # ...and the messages of chunks 1 and 2 were lost
    p.tracker.poll()
    assert p.tracker.jobs[job].stored == 1  # progress: not a stall yet
    assert rig.chunk_args() == []
    stalled_poll(p)
    args = rig.chunk_args()
    assert [a[:2] for a in args] == [[job, 1], [job, 2]]  # only the missing ones
    assert [a[2] for a in args] == [[records[1]["comment"]], [records[2]["comment"]]]
    assert all(a[3:] == ["hub:m@main", NAME] for a in args)
    assert p.tracker.jobs[job].heals == 1
    # The healed chunks run: the job completes and its assembly is queued by the worker.
    assert rig.work(rig.apps[-1]) == [0, 1]
    assert rig.assemblies() == [[job, NAME]]
    p.tracker.poll()
    assert (p.tracker.jobs[job].stored, p.tracker.jobs[job].heals) == (3, 0)


def test_work_waiting_in_the_queue_is_not_healed(rig: Rig) -> None:
    """No worker running is no fault: files wait, they are neither resent nor failed."""
    p, job, path = start(rig, comments(3))
    waiting = rig.client.lrange(INFERENCE_QUEUE, 0, -1)
    assert len(waiting) == 3
    for _ in range(MAX_HEALS + 3):
        stalled_poll(p)
    assert rig.client.lrange(INFERENCE_QUEUE, 0, -1) == waiting  # nothing sent again
    assert p.tracker.jobs[job].heals == 0
    assert rig.store.meta(job)["state"] == QUEUED
    assert path.exists() and list(rig.failed.iterdir()) == []


def test_a_job_stuck_after_max_heals_fails_naming_the_missing_chunks(rig: Rig) -> None:
    p, job, path = start(rig, comments(4))
    rig.work(n=2)  # chunks 0 and 1 done
    p.tracker.poll()
    for heal in range(1, MAX_HEALS + 1):
        rig.client.delete(INFERENCE_QUEUE)  # lost again (a worker that drops everything)
        stalled_poll(p)
        assert rig.sent(job) == [2, 3], heal
        assert p.tracker.jobs[job].heals == heal
    rig.client.delete(INFERENCE_QUEUE)
    stalled_poll(p)
    assert rig.store.meta(job)["state"] == FAILED
    assert rig.chunk_args() == []  # not sent a fourth time
    assert not rig.client.exists(parts_key(job), starts_key(job))
    p.tracker.poll()  # the tracker settles the failure: the file goes aside with a report
    assert job not in p.tracker.jobs
    assert not path.exists() and (rig.failed / NAME).exists()
    rep = report(rig)
    assert rep["missing_chunks"] == [2, 3]
    assert "chunks 2-3" in rep["error"] and "EMOTIONS_STALL_SECONDS" in rep["error"]
    assert f"sent again {MAX_HEALS} times" in rep["error"]
    assert rep["job"] == job
    assert rig.ledger.get(NAME).state == FAILED  # type: ignore[union-attr]
    assert p.failed.count == 1


def test_progress_between_heals_starts_the_count_again(rig: Rig) -> None:
    p, job, _ = start(rig, comments(3))
    for _ in range(MAX_HEALS):
        rig.client.delete(INFERENCE_QUEUE)
        stalled_poll(p)
    assert p.tracker.jobs[job].heals == MAX_HEALS
    rig.work(n=1)  # the last heal brought chunk 0 through
    p.tracker.poll()
    assert p.tracker.jobs[job].heals == 0
    rig.client.delete(INFERENCE_QUEUE)
    stalled_poll(p)
    assert rig.store.meta(job)["state"] == QUEUED  # healed again, not failed
    assert rig.sent(job) == [1, 2]


def test_a_lost_assembly_is_sent_again_once(rig: Rig) -> None:
    """The worker that stored the last chunk died before queueing the assembly."""
    p, job, _ = start(rig, comments(2))
    assert rig.work() == [0, 1]  # the guard was taken, the message never sent
    p.tracker.poll()
    assert rig.assemblies() == []
    stalled_poll(p)
    assert rig.assemblies() == [[job, NAME]]
    for _ in range(MAX_HEALS + 2):  # waiting in the results queue: not healed again
        stalled_poll(p)
    assert rig.assemblies() == [[job, NAME]]
    assert rig.store.meta(job)["state"] == QUEUED
    assert p.tracker.jobs[job].heals == 1


# --- a file from end to end, without a worker process --------------------------------------------


def test_a_file_goes_through_to_its_output(rig: Rig) -> None:
    records: list[dict[str, Any]] = [{"id": 2**70 + i, "comment": "x" * i} for i in range(5)]
    p, job, path = start(rig, records, window=2)
    while rig.chunk_args():
        rig.work(rig.apps[-1])
        p.tracker.poll()
        p.tracker.feed()
    assert rig.client.lpop(RESULTS_QUEUE) is not None
    out = assemble(rig.store, p.settings, job)
    assert out == str(rig.output.resolve() / "comments.json")
    p.tracker.poll()
    assert p.tracker.jobs == {} and p.tracker.finished == 1
    assert rig.ledger.get(NAME).state == DONE  # type: ignore[union-attr]
    assert json.loads((rig.output / "comments.json").read_bytes()) == [
        {"id": r["id"], "comment": r["comment"], "emotion": LABELS[len(r["comment"]) % 3]}
        for r in records
    ]
    assert path.exists()  # the input stays where it is
    p.take([path])
    assert p.tracker.jobs == {}  # finished: not taken again


def test_files_that_end_together_are_settled_once_redis_takes_writes(rig: Rig) -> None:
    """Several files finish before one poll: their entries are read and marked done in two
    round trips. While Redis refuses writes, no finished job is dropped unsettled: the next
    poll after the refusal settles every one, each exactly once."""
    p = rig.producer(stall_seconds=STALL, chunk_size=10, settle_seconds=0)
    paths = [rig.write(comments(2, f"f{i}"), f"f{i}.json") for i in range(4)]
    p.take(paths)
    p.tracker.feed()
    rig.work(rig.apps[-1])
    p.tracker.poll()  # all stored: their assemblies are queued
    for job in list(p.tracker.jobs):
        assemble(rig.store, p.settings, job)
    rig.client.config_set("min-replicas-to-write", 1)
    try:
        with pytest.raises(Exception) as refused:
            p.tracker.poll()
        assert refusal_code(refused.value.__cause__ or refused.value) == "NOREPLICAS"
        assert len(p.tracker.jobs) == 4 and p.tracker.finished == 0  # none dropped
    finally:
        rig.client.config_set("min-replicas-to-write", 0)
    p.tracker.poll()
    assert p.tracker.jobs == {} and p.tracker.finished == 4
    assert all(rig.ledger.get(path.name).state == DONE for path in paths)  # type: ignore[union-attr]
    p.tracker.poll()
    assert p.tracker.finished == 4


def test_an_empty_file_gets_its_assembly_at_once(rig: Rig) -> None:
    p, job, _ = start(rig, [])
    assert rig.chunk_args() == []
    assert rig.assemblies() == [[job, NAME]]
    assemble(rig.store, p.settings, job)
    p.tracker.poll()
    assert json.loads((rig.output / "comments.json").read_bytes()) == []
    assert rig.ledger.get(NAME).state == DONE  # type: ignore[union-attr]


# --- decisions by job id --------------------------------------------------------------------------


def test_an_old_job_finishing_after_a_rewrite_does_not_mark_the_new_content_done(
    rig: Rig,
) -> None:
    p, old, path = start(rig, comments(2, "v1"))
    rig.work(rig.apps[-1])
    assemble(rig.store, p.settings, old)  # written, but the producer has not polled yet
    assert rig.store.meta(old)["state"] == DONE
    rig.write(comments(3, "v2"))  # the user rewrites the file
    p.take([path])
    new = next(j for j in p.tracker.jobs if j != old)
    p.tracker.poll()  # now the old job's end is read
    assert old not in p.tracker.jobs and new in p.tracker.jobs
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.state) == (new, QUEUED)
    assert rig.store.meta(new)["state"] == QUEUED
    p.take([path])
    assert set(p.tracker.jobs) == {new}  # the new content is still followed, once


def test_an_old_job_failing_after_a_rewrite_does_not_move_the_new_file(rig: Rig) -> None:
    p, old, path = start(rig, comments(2, "v1"))
    rig.write(comments(3, "v2"))
    p.take([path])  # supersedes the old job...
    assert not rig.store.fail(old, {"error": "late failure"})  # ...so a late failure is moot
    rig.client.hset(job_key(old), "state", FAILED)  # and even a failure recorded anyway
    p.tracker.poll()
    assert path.exists() and list(rig.failed.iterdir()) == []
    assert p.failed.count == 0
    assert rig.ledger.get(NAME).state == QUEUED  # type: ignore[union-attr]


def retaken(p: Producer, path: Path) -> None:
    """The file went back to the candidates (not straight into a job): once it is complete by
    the completion rules (settle time 0 here: two looks), it is taken again."""
    assert p.tracker.jobs == {}
    assert p.candidates.pending() == {path}
    assert p.candidates.settled() == []  # the first look starts its settle clock
    p.take(p.candidates.settled())


def test_a_job_superseded_by_its_assembly_takes_the_file_again(rig: Rig) -> None:
    """The assembly found the input changed since it was queued: the producer takes the file
    as it is now, once complete by the completion rules."""
    p, old, path = start(rig, comments(2, "v1"), settle_seconds=0)
    rig.work(rig.apps[-1])
    rig.write(comments(3, "v2"))
    assert assemble(rig.store, p.settings, old).startswith("superseded")
    assert not (rig.output / "comments.json").exists()
    p.tracker.poll()
    retaken(p, path)
    (new,) = p.tracker.jobs
    assert new != old
    assert rig.ledger.get(NAME).job == new  # type: ignore[union-attr]
    assert rig.store.meta(new)["records"] == "3"


def test_a_superseded_file_still_being_written_waits_for_the_completion_rules(
    rig: Rig,
) -> None:
    """A downloader re-run onto the same name: the job of the old content is superseded, and
    the new content is not taken while it keeps changing (no partial output first)."""
    p, old, path = start(rig, comments(2, "v1"), settle_seconds=30)
    rig.work(rig.apps[-1])
    rig.write(comments(1, "v2"))  # the re-run's first page
    assert assemble(rig.store, p.settings, old).startswith("superseded")
    p.tracker.poll()
    assert p.tracker.jobs == {} and p.candidates.pending() == {path}
    assert p.candidates.settled() == []
    rig.write(comments(5, "v2"))  # more pages: still not settled
    assert p.candidates.settled() == []
    assert p.tracker.jobs == {} and rig.ledger.get(NAME).job == old  # type: ignore[union-attr]


def test_a_job_lost_from_redis_is_submitted_again(rig: Rig) -> None:
    p, old, path = start(rig, comments(2), settle_seconds=0)
    rig.client.delete(job_key(old))
    p.tracker.poll()
    retaken(p, path)
    (new,) = p.tracker.jobs
    assert new != old
    assert rig.ledger.get(NAME).job == new  # type: ignore[union-attr]


def test_a_file_that_turns_bad_after_its_check_is_fed_as_checked_then_fails(rig: Rig) -> None:
    """Chunks are sent with the texts the check read (the spool), whatever the file became
    since; the assembly sees the change (its digest) and supersedes the job, and the file,
    taken again as it is now, fails with a report."""
    p = rig.producer(stall_seconds=STALL, chunk_size=1, settle_seconds=0)
    records = comments(3)
    path = rig.write(records)
    p.take([path])
    (job,) = p.tracker.jobs
    path.write_bytes(b"{broken")
    p.tracker.feed()
    assert [a[2] for a in rig.chunk_args()] == [[r["comment"]] for r in records]
    rig.work(rig.apps[-1])
    assert assemble(rig.store, p.settings, job).startswith("superseded")
    assert rig.store.meta(job)["state"] == SUPERSEDED
    p.tracker.poll()
    retaken(p, path)
    assert p.tracker.jobs == {}
    assert (rig.failed / NAME).read_bytes() == b"{broken"
    assert rig.ledger.get(NAME).state == FAILED  # type: ignore[union-attr]


def open_descriptors(path: Path) -> int:
    """How many of this process's file descriptors are open on ``path``'s file."""
    target, count = path.stat(), 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            st = fd.stat()
        except OSError:
            continue
        count += (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev)
    return count


@pytest.mark.parametrize("suffix", ["json", "jsonl"])
def test_a_rename_mid_feed_keeps_its_job_and_its_spool(rig: Rig, suffix: str) -> None:
    """Chunks are read from the spool the check wrote, never from the input, which is not held
    open: a rename (even one the producer has not taken yet) neither loses the job nor shifts
    an index, and taking the new name keeps the job and its spool."""
    p = rig.producer(stall_seconds=STALL, chunk_size=1, window=2)
    records = comments(6)
    path = rig.input / f"live.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps(records))
    else:
        path.write_text("".join(json.dumps(c) + "\n" for c in records))
    p.take([path])
    (job,) = p.tracker.jobs
    spool = p.tracker.jobs[job].layout
    p.tracker.feed()
    assert open_descriptors(path) == 0  # fed half-way: the input is not held open
    moved = path.with_name(f"moved.{suffix}")
    path.rename(moved)
    rig.work()
    p.tracker.poll()
    p.tracker.feed()  # before the new name is taken: still fed, from the spool
    assert rig.store.meta(job)["state"] == QUEUED
    assert rig.sent(job) == [2, 3]
    p.take([moved])
    assert list(p.tracker.jobs) == [job] and p.tracker.jobs[job].sent == 4
    assert p.tracker.jobs[job].layout is spool  # not checked again
    rig.work()
    p.tracker.poll()
    p.tracker.feed()
    assert rig.sent(job) == [4, 5]
    assert [a[2] for a in rig.chunk_args()] == [[c["comment"]] for c in records[4:6]]


def test_a_heal_refused_by_redis_is_not_counted(rig: Rig) -> None:
    """Redis refusing writes for several stall periods: no heal can be sent, so none counts,
    and the file does not fail once Redis takes writes again."""
    p, job, _ = start(rig, comments(3))
    rig.client.delete(INFERENCE_QUEUE)  # the chunks' messages were lost
    rig.client.config_set("min-replicas-to-write", 1)
    try:
        for _ in range(MAX_HEALS + 2):
            with pytest.raises(Exception) as refused:  # raw, or as kombu's publish batch wraps it
                stalled_poll(p)
            assert refusal_code(refused.value.__cause__ or refused.value) == "NOREPLICAS"
            assert p.tracker.jobs[job].heals == 0
    finally:
        rig.client.config_set("min-replicas-to-write", 0)
    stalled_poll(p)
    assert p.tracker.jobs[job].heals == 1 and rig.sent(job) == [0, 1, 2]
    assert rig.store.meta(job)["state"] == QUEUED


def test_a_failure_of_older_content_does_not_move_the_rewritten_file(rig: Rig) -> None:
    """The job failed, and the file was rewritten before the producer noticed: the new
    content is taken again, not moved aside with the old content's report."""
    p, job, path = start(rig, comments(2, "v1"), settle_seconds=0)
    rig.store.fail(job, {"error": "chunk 0 failed for good"})
    rig.write(comments(3, "v2"))
    p.tracker.poll()
    assert path.exists() and list(rig.failed.iterdir()) == []
    retaken(p, path)
    (new,) = p.tracker.jobs
    assert new != job and rig.store.meta(new)["records"] == "3"


def test_a_heal_of_a_file_deleted_since_sends_its_chunks_from_the_spool(rig: Rig) -> None:
    """The file was deleted after all its chunks were sent, and their messages were lost: the
    heal sends them again from the spool (the assembly, which needs the input, then ends the
    job as superseded: "the input file disappeared")."""
    p = rig.producer(stall_seconds=STALL, chunk_size=1, window=10)
    records = comments(3)
    path = rig.input / "gone.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in records))
    p.take([path])
    (job,) = p.tracker.jobs
    p.tracker.feed()
    assert rig.sent(job) == [0, 1, 2]
    rig.client.delete(INFERENCE_QUEUE)  # the messages were lost...
    path.unlink()  # ...and the file deleted
    stalled_poll(p)
    assert p.tracker.jobs[job].heals == 1
    assert [a[2] for a in rig.chunk_args()] == [[r["comment"]] for r in records]
    rig.work(rig.apps[-1])
    assert assemble(rig.store, p.settings, job).startswith("superseded")
    assert "disappeared" in rig.store.meta(job)["detail"]
