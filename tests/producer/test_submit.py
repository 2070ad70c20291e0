"""producer.submit.Submitter against a real redis-server and real files: what is enqueued (the
chunk messages as they sit in Redis), what the ledger and the job store say, and how each
restart/crash/rewrite situation is resolved. No worker runs: the queues are read directly."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from celery import Celery

from emotions.celeryconfig import make_app
from emotions.constants import (
    ASSEMBLE_TASK,
    CLASSIFY_TASK,
    DONE,
    FAILED,
    INFERENCE_QUEUE,
    QUEUED,
    RESULTS_QUEUE,
    SUPERSEDED,
    done_key,
    parts_key,
)
from emotions.jobs import JobStore
from emotions.settings import load_settings
from harness.stack import RedisServer
from producer.completion import Incomplete
from producer.failed import FailedFolder
from producer.ledger import Entry, Ledger
from producer.submit import Submitted, Submitter

NAME = "comments.json"


def comments(n: int, tag: str = "c") -> list[dict[str, Any]]:
    return [{"id": f"{tag}{i}", "comment": f"{tag} comment {i} 😂"} for i in range(n)]


def pairs(records: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["id"], r["comment"]] for r in records]


@dataclass
class Rig:
    root: Path
    client: redis.Redis
    store: JobStore
    ledger: Ledger
    apps: list[Celery]

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    def submitter(self, url: str, **overrides: Any) -> Submitter:
        settings = load_settings(
            broker_url=url, input_dir=self.input, output_dir=self.output,
            failed_dir=self.failed, **{"model": "m", "chunk_size": 2, **overrides},
        )  # fmt: skip
        app = make_app(settings)
        self.apps.append(app)
        return Submitter(
            settings, app, self.store, self.ledger, FailedFolder(settings, self.ledger)
        )

    def write(self, records: list[dict[str, Any]], name: str = NAME) -> Path:
        path = self.input / name
        path.write_bytes(orjson.dumps(records))
        return path

    def messages(self, queue: str) -> list[dict[str, Any]]:
        """The task messages waiting in ``queue``, oldest first (kombu LPUSHes, BRPOPs)."""
        out = []
        for raw in reversed(self.client.lrange(queue, 0, -1)):
            envelope = orjson.loads(raw)
            assert envelope["content-type"] == "application/json"
            assert envelope["properties"]["body_encoding"] == "base64"
            args, kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
            assert kwargs == {}
            out.append({"task": envelope["headers"]["task"], "args": args})
        return out

    def chunk_args(self) -> list[list[Any]]:
        msgs = self.messages(INFERENCE_QUEUE)
        assert {m["task"] for m in msgs} <= {CLASSIFY_TASK}
        return [m["args"] for m in msgs]


@pytest.fixture
def rig(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    for key in list(os.environ):
        if key.startswith("EMOTIONS_"):
            monkeypatch.delenv(key)
    for sub in ("input", "output", "failed"):
        (tmp_path / sub).mkdir()
    client = redis_server.client()
    r = Rig(tmp_path, client, JobStore(client, 3600), Ledger(client), [])
    yield r
    for app in r.apps:
        app.close()
    client.close()


@pytest.fixture
def sub(rig: Rig, redis_server: RedisServer) -> Submitter:
    return rig.submitter(redis_server.url)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def output_of(rig: Rig, name: str = NAME) -> Path:
    return rig.output / (Path(name).stem + ".json")


def mark_done(rig: Rig, job: str, name: str = NAME) -> None:
    """What a finished job leaves behind: the output file, the job done, the ledger done."""
    output_of(rig, name).write_bytes(b"[]")
    assert rig.store.finish(job, str(output_of(rig, name)))
    assert rig.ledger.update(name, state=DONE) is not None


# --- a new file ---------------------------------------------------------------------------


def test_new_file_becomes_a_job_with_ordered_chunks(rig: Rig, sub: Submitter) -> None:
    records = comments(5)
    path = rig.write(records)
    st = path.stat()
    got = sub.consider(path)
    assert isinstance(got, Submitted)
    assert (got.name, got.path, got.records, got.chunks) == (NAME, path, 5, 3)
    assert (got.size, got.mtime) == (st.st_size, st.st_mtime)

    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.digest, entry.model, entry.state) == (got.job, sha256(path), "m",
                                                                   QUEUED)  # fmt: skip
    assert (entry.size, entry.mtime, entry.records) == (st.st_size, st.st_mtime, 5)

    meta = rig.store.meta(got.job)
    assert meta["state"] == QUEUED
    assert (meta["name"], meta["model"], meta["digest"]) == (NAME, "m", sha256(path))
    assert (meta["total"], meta["records"], meta["submitted"]) == ("3", "5", "1")

    args = rig.chunk_args()
    assert [a[:2] for a in args] == [[got.job, 0], [got.job, 1], [got.job, 2]]
    assert all(a[3:] == ["m", NAME] for a in args)
    assert [len(a[2]) for a in args] == [2, 2, 1]
    assert [pair for a in args for pair in a[2]] == pairs(records)
    assert rig.messages(RESULTS_QUEUE) == []  # nothing is done yet: no assembly
    assert sub.failed.count == 0


def test_same_file_again_while_in_flight_is_not_enqueued_again(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5))
    first = sub.consider(path)
    assert first is not None
    assert rig.store.store_part(first.job, 0, b'[{"id":"c0"}]') == 0  # one chunk done
    entry = rig.ledger.get(NAME)
    again = sub.consider(path)
    assert again is not None
    assert again.job == first.job
    assert (again.records, again.chunks) == (5, 3)
    assert len(rig.chunk_args()) == 3
    assert rig.messages(RESULTS_QUEUE) == []  # 1 of 3 done: no assembly yet
    assert rig.ledger.get(NAME) == entry
    assert rig.store.meta(first.job)["state"] == QUEUED


def test_changed_content_supersedes_the_job_in_flight(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5, "old"))
    old = sub.consider(path)
    assert old is not None
    rig.store.store_part(old.job, 0, b"[]")
    newer = comments(3, "new")
    rig.write(newer)
    new = sub.consider(path)
    assert new is not None
    assert new.job != old.job
    assert rig.store.meta(old.job)["state"] == SUPERSEDED
    assert not rig.client.exists(parts_key(old.job), done_key(old.job))
    assert rig.store.store_part(old.job, 1, b"[]") == -1  # late chunks of the old job are inert
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.digest, entry.state, entry.records) == (new.job, sha256(path),
                                                                     QUEUED, 3)  # fmt: skip
    args = rig.chunk_args()
    assert [a[0] for a in args] == [old.job] * 3 + [new.job] * 2
    assert [p for a in args[3:] for p in a[2]] == pairs(newer)


# --- finished files -----------------------------------------------------------------------


def test_done_unchanged_with_output_is_skipped_without_hashing(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    entry = rig.ledger.get(NAME)
    # Other bytes, same size, same mtime: only a hash could tell. Skipping proves no hashing.
    st = path.stat()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"c0", b"X0"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert sub.consider(path) is None
    assert len(rig.chunk_args()) == 3
    assert rig.ledger.get(NAME) == entry
    assert rig.messages(RESULTS_QUEUE) == []


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
    assert len(rig.chunk_args()) == 3


def test_done_then_rewritten_with_new_content_is_resubmitted(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(3, "v1"))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    newer = comments(3, "v2")
    rig.write(newer)
    again = sub.consider(path)
    assert again is not None
    assert again.job != first.job
    assert rig.store.meta(first.job)["state"] == DONE  # a finished job is not touched
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.digest, entry.state) == (again.job, sha256(path), QUEUED)
    assert [p for a in rig.chunk_args() if a[0] == again.job for p in a[2]] == pairs(newer)


def test_done_but_output_deleted_is_resubmitted(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(3))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    output_of(rig).unlink()
    again = sub.consider(path)
    assert again is not None
    assert again.job != first.job
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.state) == (again.job, QUEUED)
    assert [a[0] for a in rig.chunk_args()] == [first.job] * 2 + [again.job] * 2


def test_done_with_another_model_is_resubmitted(
    rig: Rig, sub: Submitter, redis_server: RedisServer
) -> None:
    path = rig.write(comments(3))
    first = sub.consider(path)
    assert first is not None
    mark_done(rig, first.job)
    switched = rig.submitter(redis_server.url, model="m2")
    again = switched.consider(path)
    assert again is not None
    assert again.job != first.job
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.model, entry.state, entry.digest) == (again.job, "m2", QUEUED,
                                                                   sha256(path))  # fmt: skip
    assert rig.store.meta(again.job)["model"] == "m2"
    new_args = [a for a in rig.chunk_args() if a[0] == again.job]
    assert [a[3] for a in new_args] == ["m2", "m2"]
    # and the first model's producer, back again, redoes it for its own model
    back = sub.consider(path)
    assert back is not None
    assert back.job != again.job


def test_failed_file_dropped_in_again_is_retried(rig: Rig, sub: Submitter) -> None:
    bad = rig.input / NAME
    bad.write_bytes(b"{not json")
    assert sub.consider(bad) is None
    assert rig.ledger.get(NAME).state == FAILED  # type: ignore[union-attr]
    path = rig.write(comments(3))
    got = sub.consider(path)
    assert got is not None
    assert rig.ledger.get(NAME).state == QUEUED  # type: ignore[union-attr]
    assert len(rig.chunk_args()) == 2


# --- crashes --------------------------------------------------------------------------------


def test_producer_crashed_mid_enqueue_starts_over(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(5))
    st = path.stat()
    digest = sha256(path)
    rig.store.create("crashed", name=NAME, model="m", digest=digest)
    rig.ledger.put(NAME, Entry("crashed", digest, "m", QUEUED, st.st_size, st.st_mtime))
    # a chunk it managed to send before dying, already run by a worker
    assert rig.store.store_part("crashed", 0, b"[]") == 0
    got = sub.consider(path)
    assert got is not None
    assert got.job != "crashed"
    assert rig.store.meta("crashed")["state"] == SUPERSEDED
    assert rig.store.meta(got.job)["submitted"] == "1"
    args = rig.chunk_args()
    assert [a[:2] for a in args] == [[got.job, 0], [got.job, 1], [got.job, 2]]
    entry = rig.ledger.get(NAME)
    assert entry is not None
    assert (entry.job, entry.records) == (got.job, 5)


def test_all_chunks_done_but_no_assembly_sends_the_assembly(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(4))
    st = path.stat()
    digest = sha256(path)
    rig.store.create("lost", name=NAME, model="m", digest=digest)
    rig.ledger.put(NAME, Entry("lost", digest, "m", QUEUED, st.st_size, st.st_mtime, 4))
    assert rig.store.store_part("lost", 0, b"[]") == 0
    assert rig.store.store_part("lost", 1, b"[]") == 0
    assert rig.store.set_total("lost", 2, 4) == 1  # ...and the producer died right here
    assert rig.messages(RESULTS_QUEUE) == []
    got = sub.consider(path)
    assert got is not None
    assert (got.job, got.records, got.chunks) == ("lost", 4, 2)
    assert rig.messages(RESULTS_QUEUE) == [{"task": ASSEMBLE_TASK, "args": ["lost", NAME]}]
    assert rig.chunk_args() == []  # nothing re-run
    assert rig.store.meta("lost")["state"] == QUEUED


def test_job_ended_while_producer_was_away_is_tracked_not_redone(rig: Rig, sub: Submitter) -> None:
    path = rig.write(comments(2))
    st = path.stat()
    digest = sha256(path)
    rig.store.create("ended", name=NAME, model="m", digest=digest)
    rig.ledger.put(NAME, Entry("ended", digest, "m", QUEUED, st.st_size, st.st_mtime, 2))
    rig.store.set_total("ended", 1, 2)
    assert rig.store.finish("ended", "somewhere")
    got = sub.consider(path)
    assert got is not None
    assert got.job == "ended"
    assert rig.chunk_args() == []
    assert rig.messages(RESULTS_QUEUE) == []


# --- files that fail --------------------------------------------------------------------------


def report(rig: Rig, name: str) -> dict[str, Any]:
    return orjson.loads((rig.failed / f"{name}.error.json").read_bytes())


def test_invalid_file_goes_to_failed_folder_with_report(rig: Rig, sub: Submitter) -> None:
    path = rig.input / "bad.json"
    path.write_bytes(b'[{"id": "1", "comment": "ok"}, {"id": "2" "comment": "no comma"}]')
    assert sub.consider(path) is None
    assert not path.exists()
    assert (rig.failed / "bad.json").read_bytes().endswith(b'"no comma"}]')
    rep = report(rig, "bad.json")
    assert rep["file"] == "bad.json"
    assert "bad.json" in rep["error"]
    assert rep["model"] == "m"
    entry = rig.ledger.get("bad.json")
    assert entry is not None
    assert entry.state == FAILED
    assert entry.error == rep["error"]
    assert rig.store.meta(entry.job)["state"] == FAILED  # chunks already sent are inert
    assert sub.failed.count == 1
    assert sorted(p.name for p in rig.output.iterdir()) == []


def test_each_failure_is_counted(rig: Rig, sub: Submitter) -> None:
    for name, data in (("a.json", b"nope"), ("b.csv", b"\x00\x01\x02"), ("c.json", b"[1 2]")):
        (rig.input / name).write_bytes(data)
        assert sub.consider(rig.input / name) is None
    assert sub.failed.count == 3
    assert sorted(p.name for p in rig.failed.iterdir()) == [
        "a.json", "a.json.error.json", "b.csv", "b.csv.error.json", "c.json", "c.json.error.json"
    ]  # fmt: skip
    assert rig.chunk_args() == []


def test_cut_short_file_is_withdrawn_not_failed(rig: Rig, sub: Submitter) -> None:
    """A JSON Lines file whose last line is unfinished: the chunks already streamed out are
    withdrawn (their job superseded), the file stays where it is, and once complete it is
    submitted afresh with every record."""
    path = rig.input / "live.jsonl"
    lines = [orjson.dumps({"cid": f"c{i}", "text": f"t{i}"}) + b"\n" for i in range(6)]
    path.write_bytes(b"".join(lines[:5]) + lines[5][:7])
    with pytest.raises(Incomplete) as info:
        sub.consider(path)
    assert info.value.path == path
    assert "live.jsonl line 6: the last line is an unfinished record" in info.value.reason
    entry = rig.ledger.get("live.jsonl")
    assert entry is not None
    assert rig.store.meta(entry.job)["state"] == SUPERSEDED
    assert len(rig.chunk_args()) == 2  # sent before the cut was reached: now inert
    assert path.exists() and not list(rig.failed.iterdir()) and sub.failed.count == 0
    path.write_bytes(b"".join(lines))
    again = sub.consider(path)
    assert again is not None and again.job != entry.job and again.records == 6


def test_too_big_file_fails_naming_the_setting(rig: Rig, redis_server: RedisServer) -> None:
    small = rig.submitter(redis_server.url, max_file_bytes=50)
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
    assert rig.chunk_args() == []


def test_symlink_to_outside_fails_and_target_is_untouched(rig: Rig, sub: Submitter) -> None:
    outside = rig.root / "private"
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
    assert not link.is_symlink()
    assert rig.chunk_args() == []
    assert sub.failed.count == 1


def test_file_vanishing_before_it_is_read_is_no_failure(rig: Rig, sub: Submitter) -> None:
    """Renamed or deleted between being nominated and being taken: its new name gets its own
    event, so this is neither a failure nor a report."""
    path = rig.write(comments(2))
    path.unlink()
    assert sub.consider(path) is None
    assert sub.failed.count == 0
    assert list(rig.failed.iterdir()) == []
    assert rig.ledger.get(NAME) is None
    assert rig.chunk_args() == []
