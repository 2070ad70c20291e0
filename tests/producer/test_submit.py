"""producer.submit.Submitter against a real redis-server and real files: whether a file becomes
a job, what the job and the ledger then say, and how each restart, rewrite, rename and bad file
is resolved. The submitter sends no chunk (the feeder does): the queues must stay empty."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from emotions.constants import DONE, FAILED, QUEUED, SUPERSEDED, parts_key, starts_key
from emotions.modelid import model_identity
from producer.completion import Incomplete
from producer.ledger import Entry
from producer.submit import Submitted, Submitter
from tests.producer.rig import LABELS, NAME, Rig, comments


@pytest.fixture
def sub(rig: Rig) -> Submitter:
    return rig.submitter()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mark_done(rig: Rig, job: str, name: str = NAME) -> None:
    """What a finished job leaves behind: the output file, the job done, the ledger done."""
    entry = rig.ledger.get(name)
    assert entry is not None and entry.output
    (rig.output / entry.output).write_bytes(b"[]")
    assert rig.store.finish(job, str(rig.output / entry.output))
    assert rig.ledger.update(name, state=DONE) is not None


def nothing_queued(rig: Rig) -> bool:
    return rig.chunk_args() == [] and rig.assemblies() == []


def report(rig: Rig, name: str) -> dict[str, Any]:
    return orjson.loads((rig.failed / f"{name}.error.json").read_bytes())


# --- a new file -----------------------------------------------------------------------------


def test_new_file_becomes_a_job(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5))
    st = path.stat()
    got = sub.consider(path)
    assert isinstance(got, Submitted)
    assert (got.name, got.path, got.records, got.chunks, got.sent) == (NAME, path, 5, 3, 0)
    assert (got.size, got.mtime) == (st.st_size, st.st_mtime)
    assert (got.chunk_size, got.chunk_bytes) == (2, sub.settings.chunk_bytes)
    assert got.digest == sha256(path)

    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.digest, entry.model, entry.state) == (
        got.job,
        got.digest,
        "hub:m@main",
        QUEUED,
    )
    assert (entry.size, entry.mtime, entry.records, entry.output) == (
        st.st_size,
        st.st_mtime,
        5,
        str((rig.output / "comments.json").resolve()),  # the absolute path: one truth
    )

    meta = rig.store.meta(got.job)
    assert meta["state"] == QUEUED
    assert (meta["name"], meta["digest"]) == (NAME, got.digest)
    assert meta["output"] == str((rig.output / "comments.json").resolve())
    assert meta["model"] == model_identity("m") == "hub:m@main"
    assert meta["path"].encode("utf-8", "surrogateescape") == os.fsencode(path.resolve())
    assert (meta["total"], meta["records"], meta["sent"]) == ("3", "5", "0")
    assert (meta["chunk_size"], meta["chunk_bytes"]) == ("2", str(sub.settings.chunk_bytes))
    assert rig.jobs() == {got.job}
    assert nothing_queued(rig)  # the feeder sends chunks, a window at a time
    assert sub.failed.count == 0


def test_chunks_are_counted_by_bytes_too(rig: Rig) -> None:
    sub = rig.submitter(chunk_size=100, chunk_bytes=1024)
    records = [{"id": i, "comment": "x" * 600} for i in range(4)]
    got = sub.consider(rig.write(records))
    assert got is not None
    assert (got.records, got.chunks, got.chunk_bytes) == (4, 4, 1024)


def test_an_empty_file_is_a_job_of_no_chunk(rig: Rig, sub: Submitter) -> None:
    got = sub.consider(rig.write([]))
    assert got is not None
    assert (got.records, got.chunks) == (0, 0)
    assert rig.store.meta(got.job)["total"] == "0"


def test_a_bad_record_at_the_end_fails_the_file_before_any_job(rig: Rig, sub: Submitter) -> None:
    """The whole file is read before its job exists: no GPU time for a file that will fail."""
    path = rig.input / "late.jsonl"
    lines = [orjson.dumps(c) for c in comments(50)] + [b'{"id": "bad", "comment": 1 2}']
    path.write_bytes(b"\n".join(lines) + b"\n")  # malformed, not cut short
    assert sub.consider(path) is None
    assert rig.jobs() == set()
    assert nothing_queued(rig)
    assert "line 51" in report(rig, "late.jsonl")["error"]
    assert (rig.failed / "late.jsonl").exists() and not path.exists()


def test_a_non_utf8_name_is_submitted_and_kept_exactly(rig: Rig, sub: Submitter) -> None:
    raw = b"caf\xe9.json"
    path = rig.input / os.fsdecode(raw)
    path.write_bytes(orjson.dumps(comments(2)))
    got = sub.consider(path)
    assert got is not None
    meta = rig.store.meta(got.job)
    assert meta["path"].encode("utf-8", "surrogateescape") == os.fsencode(path.resolve())
    assert meta["name"] == "caf\\xe9.json"
    assert meta["output"].encode("utf-8")  # output names are valid UTF-8
    entry = rig.ledger.get(path.name)
    assert entry is not None and entry.job == got.job


# --- files in flight -------------------------------------------------------------------------


def test_same_file_again_while_in_flight_is_not_submitted_again(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5))
    first = sub.consider(path)
    assert first is not None
    rig.store.mark_sent(first.job, 2)
    rig.store.begin(first.job, 0, 5, {})
    rig.store.store_part(first.job, 0, [0, 1], LABELS)  # one chunk done
    entry = rig.ledger.get(NAME)
    again = sub.consider(path)
    assert again is not None
    assert again.job == first.job
    assert (again.records, again.chunks, again.sent) == (5, 3, 2)  # resumes where it stood
    assert rig.jobs() == {first.job}
    assert rig.ledger.get(NAME) == entry
    assert rig.store.meta(first.job)["state"] == QUEUED
    assert rig.store.stored(first.job) == {0}
    assert nothing_queued(rig)


def test_a_restarted_producer_resumes_with_the_jobs_own_cut(rig: Rig, sub: Submitter) -> None:
    """Settings may change across a restart; a job's chunks are cut as when it was created,
    or labels would be paired with the wrong records."""
    path = rig.write(comments(5))
    first = sub.consider(path)
    assert first is not None
    rig.store.mark_sent(first.job, 1)
    restarted = rig.submitter(chunk_size=4, chunk_bytes=4096)
    again = restarted.consider(path)
    assert again is not None
    assert again.job == first.job
    assert (again.sent, again.chunks, again.chunk_size, again.chunk_bytes) == (
        1,
        3,
        2,
        sub.settings.chunk_bytes,
    )


def test_changed_content_supersedes_the_job_in_flight(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5, "old"))
    old = sub.consider(path)
    assert old is not None
    rig.store.begin(old.job, 0, 5, {})
    rig.store.store_part(old.job, 0, [0, 0], LABELS)
    rig.write(comments(3, "new"))
    new = sub.consider(path)
    assert new is not None
    assert new.job != old.job
    assert rig.store.meta(old.job)["state"] == SUPERSEDED
    assert not rig.client.exists(parts_key(old.job), starts_key(old.job))  # freed at once
    assert rig.store.store_part(old.job, 1, [0, 0], LABELS) == -1  # late chunks are inert
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.digest, entry.state, entry.records) == (
        new.job,
        sha256(path),
        QUEUED,
        3,
    )
    assert Path(entry.output).name == "comments.json"  # the same file keeps its output name
    assert (new.records, new.chunks, new.sent) == (3, 2, 0)


def test_a_job_lost_from_redis_is_submitted_again(rig: Rig, sub: Submitter) -> None:
    """A Redis without its append-only file forgets jobs; the ledger still says queued."""
    path = rig.write(comments(3))
    first = sub.consider(path)
    assert first is not None
    rig.client.delete(*rig.client.keys("emotions:job:*"))
    again = sub.consider(path)
    assert again is not None
    assert again.job != first.job
    assert rig.ledger.get(NAME).job == again.job  # type: ignore[union-attr]


def test_a_job_that_ended_while_the_producer_was_away_is_followed(rig: Rig, sub: Submitter) -> None:
    """Its end must be settled by the tracker (ledger done, or failed folder), not redone."""
    path = rig.write(comments(2))
    first = sub.consider(path)
    assert first is not None
    assert rig.store.finish(first.job, "somewhere")
    again = rig.submitter().consider(path)
    assert again is not None
    assert again.job == first.job
    assert rig.jobs() == {first.job}


def test_a_file_renamed_in_flight_keeps_its_job(rig: Rig, sub: Submitter) -> None:
    old = rig.write(comments(5))
    first = sub.consider(old)
    assert first is not None
    rig.store.mark_sent(first.job, 3)
    new = old.with_name("renamed.json")
    old.rename(new)
    again = sub.consider(new)
    assert again is not None
    assert again.job == first.job
    assert (again.name, again.path, again.sent) == ("renamed.json", new, 3)
    assert rig.ledger.get(NAME) is None
    entry = rig.ledger.get("renamed.json")
    assert entry is not None and (entry.job, entry.state) == (first.job, QUEUED)
    meta = rig.store.meta(first.job)
    assert meta["name"] == "renamed.json"
    assert meta["path"].encode() == os.fsencode(new.resolve())  # the assembly reads it there
    assert rig.jobs() == {first.job}


def test_a_copy_of_a_file_in_flight_is_its_own_job(rig: Rig, sub: Submitter) -> None:
    original = rig.write(comments(3))
    first = sub.consider(original)
    assert first is not None
    copy = rig.write(comments(3), "copy.json")
    assert copy.read_bytes() == original.read_bytes()
    second = sub.consider(copy)
    assert second is not None
    assert second.job != first.job
    assert rig.store.meta(first.job)["path"].encode() == os.fsencode(original.resolve())
    assert rig.ledger.get(NAME).job == first.job  # type: ignore[union-attr]
    assert rig.ledger.get("copy.json").output.endswith("/copy.json")  # type: ignore[union-attr]


# --- finished files ---------------------------------------------------------------------------


def test_done_unchanged_is_skipped_without_hashing(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    entry = rig.ledger.get(NAME)
    # Other bytes, same size, same mtime: only a hash could tell. Skipping proves no hashing.
    st = path.stat()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"c0", b"X0"))
    assert path.read_bytes() != data
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert sub.consider(path) is None
    assert rig.ledger.get(NAME) == entry
    assert rig.jobs() == {first.job}


def test_done_touched_but_same_content_is_skipped_and_ledger_refreshed(
    rig: Rig, sub: Submitter
) -> None:
    path = rig.write(comments(5))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # e.g. copied again
    assert sub.consider(path) is None
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.state, entry.job, entry.mtime) == (DONE, first.job, path.stat().st_mtime)
    assert rig.jobs() == {first.job}


def test_done_then_rewritten_with_new_content_is_submitted(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(3, "v1"))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    rig.write(comments(3, "v2"))
    again = sub.consider(path)
    assert again is not None
    assert again.job != first.job
    assert rig.store.meta(first.job)["state"] == DONE  # a finished job is not touched
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.digest, entry.state) == (again.job, sha256(path), QUEUED)
    assert Path(entry.output).name == "comments.json"


def test_done_but_output_deleted_is_redone_once_with_a_warning(
    rig: Rig, sub: Submitter, caplog: pytest.LogCaptureFixture
) -> None:
    """An output moved away by a downstream job is made again once, not at every rescan."""
    path = rig.write(comments(3))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    output = rig.output / "comments.json"
    output.unlink()
    again = sub.consider(path)
    assert again is not None
    assert again.job != first.job
    assert "making it again" in caplog.text
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.state, entry.output) == (again.job, QUEUED, str(output.resolve()))
    assert entry.redone == 1
    mark_done(rig, again.job)
    output.unlink()  # moved away again
    caplog.clear()
    for _ in range(3):  # rescans
        assert sub.consider(path) is None
    assert caplog.text.count("gone again") == 1  # said once, not at every rescan
    assert rig.jobs() == {first.job, again.job}  # nothing new submitted
    rig.write(comments(4))  # new content: a new job, and its output may be redone again
    third = sub.consider(path)
    assert third is not None and rig.ledger.get(NAME).redone == 0  # type: ignore[union-attr]


def test_done_with_another_model_is_redone(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(3))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    again = rig.submitter(model="owner/other").consider(path)
    assert again is not None
    assert again.job != first.job
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.model, entry.state) == (again.job, "hub:owner/other@main", QUEUED)
    assert rig.store.meta(again.job)["model"] == "hub:owner/other@main"
    # and the first model's producer, back again, redoes it for its own model
    back = sub.consider(path)
    assert back is not None
    assert back.job not in (first.job, again.job)
    assert rig.store.meta(again.job)["state"] == SUPERSEDED


def test_done_with_the_same_model_spelled_otherwise_is_skipped(rig: Rig, tmp_path: Path) -> None:
    """``/models/bert`` and ``/models/bert/`` are one model: a restart with the other spelling
    must not redo every finished file."""
    folder = tmp_path / "models" / "bert"
    folder.mkdir(parents=True)
    path = rig.write(comments(3))
    first = rig.submitter(model=str(folder)).consider(path)
    assert first is not None
    mark_done(rig, first.job)
    assert rig.submitter(model=f"{folder}/").consider(path) is None
    assert rig.jobs() == {first.job}


def test_failed_file_dropped_in_again_is_retried(rig: Rig, sub: Submitter) -> None:
    bad = rig.input / NAME
    bad.write_bytes(b"{not json")
    assert sub.consider(bad) is None
    assert rig.ledger.get(NAME).state == FAILED  # type: ignore[union-attr]
    assert not bad.exists()
    path = rig.write(comments(3))
    got = sub.consider(path)
    assert got is not None
    assert rig.ledger.get(NAME).state == QUEUED  # type: ignore[union-attr]
    assert rig.jobs() == {got.job}


def test_a_failed_file_that_could_not_be_moved_is_not_taken_until_it_changes(
    rig: Rig, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    sub = rig.submitter(failed_dir=blocker / "failed")
    bad = rig.input / NAME
    bad.write_bytes(b"{not json")
    assert sub.consider(bad) is None
    assert bad.exists()  # it could not go anywhere
    entry = rig.ledger.get(NAME)
    assert entry is not None and entry.state == FAILED
    assert sub.consider(bad) is None
    assert sub.failed.count == 1  # not failed (nor parsed) again
    bad.write_bytes(orjson.dumps(comments(2)))
    assert sub.consider(bad) is not None


# --- files that fail ------------------------------------------------------------------------------


def test_invalid_file_goes_to_failed_folder_with_report(rig: Rig, sub: Submitter) -> None:
    path = rig.input / "bad.json"
    data = b'[{"id": "1", "comment": "ok"}, {"id": "2" "comment": "no comma"}]'
    path.write_bytes(data)
    assert sub.consider(path) is None
    assert not path.exists()
    assert (rig.failed / "bad.json").read_bytes() == data
    rep = report(rig, "bad.json")
    assert rep["file"] == "bad.json"
    assert "bad.json" in rep["error"]
    assert rep["model"] == "m"
    assert rep["failed_at"].endswith("Z")
    entry = rig.ledger.get("bad.json")
    assert entry is not None
    assert (entry.state, entry.error) == (FAILED, rep["error"])
    assert sub.failed.count == 1
    assert list(rig.output.iterdir()) == []
    assert rig.jobs() == set()


def test_each_failure_is_counted(rig: Rig, sub: Submitter) -> None:
    for name, data in (("a.json", b"nope"), ("b.csv", b"\x00\x01\x02"), ("c.json", b"[1 2]")):
        (rig.input / name).write_bytes(data)
        assert sub.consider(rig.input / name) is None
    assert sub.failed.count == 3
    assert sorted(p.name for p in rig.failed.iterdir()) == [
        "a.json",
        "a.json.error.json",
        "b.csv",
        "b.csv.error.json",
        "c.json",
        "c.json.error.json",
    ]
    assert rig.jobs() == set()


def test_cut_short_file_is_deferred_not_failed(rig: Rig, sub: Submitter) -> None:
    """A JSON Lines file whose last line is unfinished: no job is created, nothing is sent,
    the file stays where it is, and once complete it is submitted with every record."""
    path = rig.input / "live.jsonl"
    lines = [orjson.dumps({"cid": f"c{i}", "text": f"t{i}"}) + b"\n" for i in range(6)]
    path.write_bytes(b"".join(lines[:5]) + lines[5][:7])
    with pytest.raises(Incomplete) as info:
        sub.consider(path)
    assert info.value.path == path
    assert "live.jsonl line 6: the last line is an unfinished record" in info.value.reason
    assert rig.ledger.get("live.jsonl") is None and rig.chunk_args() == []
    assert path.exists() and not list(rig.failed.iterdir()) and sub.failed.count == 0
    path.write_bytes(b"".join(lines))
    again = sub.consider(path)
    assert again is not None and again.records == 6


def test_too_big_file_fails_naming_the_setting(rig: Rig) -> None:
    small = rig.submitter(max_file_bytes=50)
    path = rig.write(comments(5))
    size = path.stat().st_size
    assert size > 50
    assert small.consider(path) is None
    rep = report(rig, NAME)
    assert "EMOTIONS_MAX_FILE_BYTES" in rep["error"]
    assert f"{size:,}" in rep["error"]
    assert (rig.failed / NAME).exists()
    assert not path.exists()
    assert small.failed.count == 1
    assert rig.jobs() == set()


def test_symlink_to_outside_fails_and_target_is_untouched(
    rig: Rig, sub: Submitter, tmp_path: Path
) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    target = outside / "secret.json"
    target.write_bytes(orjson.dumps(comments(3)))
    before = target.read_bytes()
    link = rig.input / "link.json"
    link.symlink_to(target)
    assert sub.consider(link) is None
    assert "symbolic link" in report(rig, "link.json")["error"]
    assert target.read_bytes() == before
    assert sorted(p.name for p in outside.iterdir()) == ["secret.json"]
    moved = rig.failed / "link.json"
    assert moved.is_symlink()  # the link was moved aside, not what it points to
    assert not os.path.lexists(link)
    assert rig.jobs() == set()
    assert sub.failed.count == 1


def test_symlink_inside_the_folder_is_taken(rig: Rig, sub: Submitter) -> None:
    target = rig.write(comments(3), "real.json")
    link = rig.input / "alias.json"
    link.symlink_to(target)
    got = sub.consider(link)
    assert got is not None and got.records == 3
    assert sub.failed.count == 0


def test_file_vanishing_before_it_is_read_is_no_failure(rig: Rig, sub: Submitter) -> None:
    """Renamed or deleted between being nominated and being taken: its new name gets its own
    event, so this is neither a failure nor a report."""
    path = rig.write(comments(2))
    path.unlink()
    assert sub.consider(path) is None
    assert sub.failed.count == 0
    assert list(rig.failed.iterdir()) == []
    assert rig.ledger.get(NAME) is None
    assert rig.jobs() == set()


def test_a_ledger_entry_for_content_never_submitted_is_superseded(rig: Rig, sub: Submitter) -> None:
    """A producer that died between creating a job and recording it leaves a ledger entry
    whose job is queued: newer content replaces it, and its chunks become inert."""
    path = rig.write(comments(4))
    st = path.stat()
    rig.store.create("crashed", name=NAME, total=2, records=4)
    rig.ledger.put(NAME, Entry("crashed", "other", "m", QUEUED, st.st_size - 1, st.st_mtime))
    got = sub.consider(path)
    assert got is not None and got.job != "crashed"
    assert rig.store.meta("crashed")["state"] == SUPERSEDED
    assert rig.store.begin("crashed", 0, 5, {}) == -1


def test_a_copy_of_a_file_with_a_non_utf8_name_is_its_own_job(rig: Rig, sub: Submitter) -> None:
    """The original is still there, under a name that is not UTF-8: the copy must not take
    its job (nor its output name)."""
    original = rig.write(comments(3), os.fsdecode(b"caf\xe9.json"))
    first = sub.consider(original)
    assert first is not None
    copy = rig.write(comments(3), "copy.json")
    assert copy.read_bytes() == original.read_bytes()
    second = sub.consider(copy)
    assert second is not None
    assert second.job != first.job
    assert rig.store.meta(first.job)["path"].encode("utf-8", "surrogateescape") == os.fsencode(
        original.resolve()
    )
    assert rig.ledger.get(original.name).job == first.job  # type: ignore[union-attr]


def test_a_new_name_reads_no_whole_ledger(rig: Rig, sub: Submitter) -> None:
    """A folder of thousands of files: a new name (and a rename) costs a few single-key
    reads, never a read of the whole ledger (HGETALL, HKEYS, HSCAN) per file."""
    for i in range(2000):
        rig.ledger.put(f"old{i}.json", Entry(f"j{i}", f"d{i}", "m", DONE, 1, 1.0))
    rig.client.config_resetstat()
    renamed = sub.consider(rig.write(comments(3), "first.json"))
    assert renamed is not None
    rig.write(comments(4), "new.json")
    (rig.input / "first.json").rename(rig.input / "second.json")
    assert sub.consider(rig.input / "new.json") is not None
    again = sub.consider(rig.input / "second.json")
    assert again is not None and again.job == renamed.job  # the rename was found
    stats = rig.client.info("commandstats")
    assert not {"cmdstat_hkeys", "cmdstat_hscan", "cmdstat_hvals"} & set(stats)
    # HGETALL only of the one job record a rename reads, never of the ledger's 2,000 fields.
    assert stats.get("cmdstat_hgetall", {"calls": 0})["calls"] <= 1
