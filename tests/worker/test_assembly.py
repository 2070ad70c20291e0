"""worker.assembly on a real redis-server and real files: the output pairs each record with its
own label in every format; a file changed, cut short, replaced or removed after it was queued
is superseded, never written with labels of other content, even when the change lands while the
assembly is reading it; missing labels write nothing and release the guard."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest

from bench.inputs import FORMATS
from emotions.chunking import chunks
from emotions.constants import DONE, FAILED, SUPERSEDED, assemble_lock_key
from emotions.files import file_digest
from emotions.formats import iter_records
from emotions.jobs import JobStore, connect
from emotions.settings import Settings, load_settings
from harness.stack import RedisServer
from worker.assembly import assemble

LABELS = [f"label{i}" for i in range(28)]
CHUNK = 7


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    client = connect(redis_server.url)
    yield JobStore(client, ttl=600)
    client.close()


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return load_settings(
        broker_url=redis_server.url,
        input_dir=tmp_path / "in",
        output_dir=tmp_path / "out",
        failed_dir=tmp_path / "failed",
        model="m",
    )


def label_of(text: str) -> int:
    return len(text) % len(LABELS)


def queue(store: JobStore, path: Path, job: str = "job", store_parts: bool = True) -> None:
    """Create the job and store every chunk's labels, as the producer and workers do."""
    cut = list(chunks((r.comment for r in iter_records(path)), CHUNK, 1 << 20))
    store.create(
        job,
        name=path.name,
        path=os.fsencode(path),
        output=path.stem + ".json",
        digest=file_digest(path),
        model="m",
        chunk_size=CHUNK,
        chunk_bytes=1 << 20,
        total=len(cut),
        records=sum(len(c) for c in cut),
    )
    if store_parts:
        for index, chunk in enumerate(cut):
            store.store_part(job, index, [label_of(text) for text in chunk], LABELS)


def output_of(settings: Settings, path: Path) -> Path:
    return settings.output_dir / (path.stem + ".json")


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_record_gets_its_own_label_in_every_format(
    tmp_path: Path, store: JobStore, settings: Settings, name: str
) -> None:
    suffix, writer = FORMATS[name]
    path = tmp_path / f"{name}{suffix}"
    writer(path, 300, 5)
    queue(store, path)
    assert assemble(store, settings, "job") == str(output_of(settings, path))
    expected = [
        {"id": r.id, "comment": r.comment, "emotion": LABELS[label_of(r.comment)]}
        for r in iter_records(path)
    ]
    assert orjson.loads(output_of(settings, path).read_bytes()) == expected
    assert store.meta("job")["state"] == DONE


def test_content_the_results_worker_cannot_read_fails_the_job_instead_of_looping(
    tmp_path: Path, store: JobStore, settings: Settings
) -> None:
    """The job's own bytes (same digest) refused by a lower limit on the results worker than
    on the producer: superseding would have the producer submit the same content forever."""
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "aaaa"}\n{"cid": "b", "text": "bbbbbbbbbb"}\n')
    queue(store, path)
    strict = settings.model_copy(update={"max_comment_chars": 5})
    assert assemble(store, strict, "job").startswith("failed")
    meta = store.meta("job")
    assert meta["state"] == FAILED
    assert "EMOTIONS_MAX_COMMENT_CHARS" in orjson.loads(meta["detail"])["error"]
    assert not output_of(settings, path).exists()


def test_a_file_changed_after_queueing_is_superseded_not_written(
    tmp_path: Path, store: JobStore, settings: Settings
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "aaaa"}\n{"cid": "b", "text": "bbbb"}\n')
    queue(store, path)
    path.write_bytes(b'{"cid": "a", "text": "AAAA"}\n{"cid": "b", "text": "BBBB"}\n')
    assert assemble(store, settings, "job").startswith("superseded")
    assert store.meta("job")["state"] == SUPERSEDED
    assert not output_of(settings, path).exists()


def test_a_change_while_the_assembly_reads_is_caught_before_the_rename(
    tmp_path: Path, redis_server: RedisServer, settings: Settings
) -> None:
    """The race of hashing first and reading later: the tail of the file is rewritten (same
    length, so the same records and chunks) after the assembly has read its first chunk."""
    path = tmp_path / "big.jsonl"
    line = b'{"cid": "%06d", "text": "the same text, 40 bytes long.........."}\n'
    path.write_bytes(b"".join(line % i for i in range(60_000)))  # several read blocks

    class Rewriting(JobStore):
        def parts(
            self, job: str, total: int, known: Mapping[int, bytes] | None = None
        ) -> Iterator[bytes | None]:
            for index, part in enumerate(super().parts(job, total, known)):
                if index == 1:  # the first chunk's records are read: change the end
                    with path.open("r+b") as f:
                        f.seek(-20, os.SEEK_END)
                        f.write(b"CHANGED!")
                yield part

    client = connect(redis_server.url)
    store = Rewriting(client, ttl=600)
    queue(store, path)
    assert assemble(store, settings, "job").startswith("superseded")
    assert store.meta("job")["state"] == SUPERSEDED
    assert not output_of(settings, path).exists()
    assert not list(settings.output_dir.glob(".*.tmp"))  # the temporary file is gone too
    client.close()


def test_a_file_cut_short_since_is_superseded_not_failed(
    tmp_path: Path, store: JobStore, settings: Settings
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "x"}\n{"cid": "b", "text": "y"}\n')
    queue(store, path)
    path.write_bytes(b'{"cid": "a", "text": "x"}\n{"cid": "b", "te')  # being rewritten
    assert assemble(store, settings, "job").startswith("superseded")
    assert store.meta("job")["state"] == SUPERSEDED


def test_a_file_with_more_records_since_is_superseded(
    tmp_path: Path, store: JobStore, settings: Settings
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "x"}\n')
    queue(store, path)
    with path.open("ab") as f:
        f.write(b'{"cid": "b", "text": "y"}\n')
    assert assemble(store, settings, "job").startswith("superseded")
    assert not output_of(settings, path).exists()


def test_a_file_replaced_by_a_bad_one_is_superseded(
    tmp_path: Path, store: JobStore, settings: Settings
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "x"}\n')
    queue(store, path)
    path.write_bytes(b"not json at all\n")
    assert assemble(store, settings, "job").startswith("superseded")


def test_a_removed_file_is_superseded(tmp_path: Path, store: JobStore, settings: Settings) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "x"}\n')
    queue(store, path)
    path.unlink()
    assert assemble(store, settings, "job") == "superseded: the input file disappeared"


def test_a_file_emptied_since_is_superseded(
    tmp_path: Path, store: JobStore, settings: Settings
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"cid": "a", "text": "x"}\n')
    queue(store, path)
    path.write_bytes(b"")  # being rewritten: detect refuses it before any parse
    assert assemble(store, settings, "job").startswith("superseded: c.jsonl: file is empty")
    assert store.meta("job")["state"] == SUPERSEDED


def test_missing_labels_write_nothing_and_release_the_guard(
    tmp_path: Path, store: JobStore, settings: Settings
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"".join(b'{"cid": "%d", "text": "x"}\n' % i for i in range(20)))
    queue(store, path, store_parts=False)
    store.store_part("job", 0, [1] * CHUNK, LABELS)
    assert store.claim_assembly("job")
    assert assemble(store, settings, "job") == "not ready: the labels of chunk 1 are missing"
    assert not output_of(settings, path).exists()
    assert not store.r.exists(assemble_lock_key("job"))
    assert store.meta("job")["state"] == "queued"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("blank_lines.csv", b"id,comment\na,x\n\nb,yy\n\n"),  # the fast path gives up on it
        ("mixed.json", b'[{"id": 1, "comment": "a"}, {"comment": "bb"}, "ccc"]'),
        ("big_id.jsonl", b'{"id": 123456789012345678901234567890, "text": "a"}\n'),
        ("null_id.jsonl", b'{"cid": "a", "text": "x"}\n{"cid": null, "text": "yy"}\n'),
    ],
)
def test_inputs_the_fast_path_leaves_to_the_readers_are_written_exactly(
    tmp_path: Path, store: JobStore, settings: Settings, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    queue(store, path)
    assert assemble(store, settings, "job") == str(output_of(settings, path))
    expected = [
        {"id": r.id, "comment": r.comment, "emotion": LABELS[label_of(r.comment)]}
        for r in iter_records(path)
    ]
    assert json.loads(output_of(settings, path).read_bytes()) == expected  # exact big ints


SKIPPED_FIELD = {  # a line of each format with a field the fast path does not decode: "@a"
    "c.jsonl": b'{"cid": "%d", "text": "the same text", "author": "@a"}\n',
    "c.csv": b"%d,the same text: long enough for the bad byte to lie past the head,@a\n",
}
VERDICT = {  # the readers' words (the CSV reader names a line only where it can seek back)
    "c.jsonl": "line 3000: not UTF-8",
    "c.csv": "c.csv: not UTF-8",
}


@pytest.mark.parametrize("name", list(SKIPPED_FIELD))
def test_content_only_the_fast_path_would_read_is_judged_by_the_readers(
    tmp_path: Path, store: JobStore, settings: Settings, name: str
) -> None:
    """A byte that is not UTF-8 in a field msgspec skips or a CSV column not decoded (the fast
    path reads past it, as test_fastread pins): the digest is not the job's, so the readers
    judge the file again, and their verdict, in their words, supersedes the job."""
    path = tmp_path / name
    lines = [SKIPPED_FIELD[name] % i for i in range(3000)]
    if name.endswith(".csv"):
        lines.insert(0, b"cid,text,author\n")
    path.write_bytes(b"".join(lines))
    queue(store, path)
    lines[-1] = lines[-1].replace(b"@a", b"@\xff")  # past the head that detect() checks
    path.write_bytes(b"".join(lines))
    outcome = assemble(store, settings, "job")
    assert outcome.startswith("superseded: the input file changed while it was processed (")
    assert VERDICT[name] in outcome
    assert not output_of(settings, path).exists()
