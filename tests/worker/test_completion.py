"""The chunk that completes a file assembles it in place, or queues its assembly; every way the
assembly in place can fail queues it instead (or hands the chunk back), never failing the
chunk, never losing the file. Real redis-server(s), a real Celery app publishing to them, real
files; no worker (the task around this is tested with real workers in
``tests/integration/test_inline_assembly.py``)."""

from __future__ import annotations

import base64
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from celery import Celery
from celery.exceptions import Reject

from emotions.celeryconfig import make_app
from emotions.constants import ASSEMBLE_TASK, DONE, QUEUED, RESULTS_QUEUE, SUPERSEDED, job_key
from emotions.formats import iter_records
from emotions.jobs import JobStore, connect
from emotions.settings import Settings, load_settings
from harness.stack import RedisServer
from tests.worker.test_assembly import LABELS, label_of, output_of, queue
from worker.completion import QUEUED as ASSEMBLY_QUEUED
from worker.completion import complete_file

JOB = "job"


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    """A job store that gives up within seconds (a worker's waits minutes first)."""
    client = connect(redis_server.url, patient=False)
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
        device="cpu",
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    celery = make_app(settings)
    yield celery
    celery.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "clip.jsonl"
    path.parent.mkdir()
    records = [{"cid": f"c{i}", "text": f"comment {i} " * (i + 1)} for i in range(3)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def queued_assemblies(server: RedisServer) -> list[list[str]]:
    """The arguments of the assembly messages waiting in the results queue."""
    client = server.client()
    found = []
    for raw in client.lrange(RESULTS_QUEUE, 0, -1):
        envelope = orjson.loads(raw)
        assert envelope["headers"]["task"] == ASSEMBLE_TASK
        found.append(orjson.loads(base64.b64decode(envelope["body"]))[0])
    client.close()
    return found


def complete(app: Celery, store: JobStore, settings: Settings, here: bool = True) -> str:
    return complete_file(app, store, settings, job=JOB, name="clip.jsonl", index=0, here=here)


def test_a_worker_that_serves_the_results_queue_writes_the_file_itself(
    app: Celery, store: JobStore, settings: Settings, source: Path, redis_server: RedisServer
) -> None:
    queue(store, source, JOB)
    assert complete(app, store, settings) == str(output_of(settings, source))
    out = orjson.loads(output_of(settings, source).read_bytes())
    assert [r["emotion"] for r in out] == [LABELS[label_of(r["comment"])] for r in out]
    assert store.meta(JOB)["state"] == DONE
    assert queued_assemblies(redis_server) == []  # nothing left for a results worker


def test_a_worker_that_does_not_serve_it_queues_the_assembly(
    app: Celery, store: JobStore, settings: Settings, source: Path, redis_server: RedisServer
) -> None:
    queue(store, source, JOB)
    assert complete(app, store, settings, here=False) == ASSEMBLY_QUEUED
    assert queued_assemblies(redis_server) == [[JOB, "clip.jsonl"]]
    assert not output_of(settings, source).exists()
    assert store.meta(JOB)["state"] == QUEUED


def test_an_output_folder_that_cannot_be_written_queues_the_assembly(
    app: Celery,
    store: JobStore,
    settings: Settings,
    source: Path,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The queued assembly retries the write (with back-off) until the folder is back; the
    labels stay stored meanwhile."""
    queue(store, source, JOB)
    settings.output_dir.write_text("a file where the output folder should be")
    with caplog.at_level(logging.WARNING):
        assert complete(app, store, settings) == ASSEMBLY_QUEUED
    assert "not assembled here (cannot write" in caplog.text
    assert queued_assemblies(redis_server) == [[JOB, "clip.jsonl"]]
    assert store.meta(JOB)["state"] == QUEUED and store.stored(JOB) == {0}


def test_redis_refusing_writes_hands_the_chunk_back_and_its_next_run_writes_the_file(
    app: Celery, store: JobStore, settings: Settings, source: Path, redis_server: RedisServer
) -> None:
    """Redis refuses the job's end and the assembly's message alike: the chunk goes back to
    its queue (the task's Reject), to complete the file when it comes again."""
    queue(store, source, JOB)
    admin = redis_server.client()
    admin.config_set("min-replicas-to-write", 1)  # NOREPLICAS: every write refused
    try:
        with pytest.raises(Reject) as handed_back:
            complete(app, store, settings)
        assert handed_back.value.requeue is True and "NOREPLICAS" in str(handed_back.value.reason)
    finally:
        admin.config_set("min-replicas-to-write", 0)
    assert store.meta(JOB)["state"] == QUEUED and admin.llen(RESULTS_QUEUE) == 0
    assert complete(app, store, settings) == str(output_of(settings, source))  # comes again
    assert store.meta(JOB)["state"] == DONE
    admin.close()


def test_a_job_store_refusing_writes_beside_a_working_broker_queues_the_assembly(
    tmp_path: Path, settings: Settings, source: Path, redis_server: RedisServer
) -> None:
    """Job store (the result backend) and broker on two servers: the assembly is queued on
    the broker, for a results worker to retry until the job store takes writes again."""
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    celery = make_app(settings.model_copy(update={"broker_url": broker.url}))
    client = connect(redis_server.url, patient=False)
    store = JobStore(client, ttl=600)
    admin = redis_server.client()
    try:
        queue(store, source, JOB)
        admin.config_set("min-replicas-to-write", 1)
        assert complete(celery, store, settings) == ASSEMBLY_QUEUED
        assert queued_assemblies(broker) == [[JOB, "clip.jsonl"]]
    finally:
        admin.config_set("min-replicas-to-write", 0)
        admin.close()
        client.close()
        celery.close()
        broker.stop()
    assert store.meta(JOB)["state"] == QUEUED


def test_any_other_error_queues_the_assembly_and_says_so_with_its_traceback(
    app: Celery,
    store: JobStore,
    settings: Settings,
    source: Path,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error the assembly does not expect is the queued assembly's to meet again (its
    failure hook then fails the file with a report): the chunk's labels are not failed."""
    queue(store, source, JOB)
    store.r.hset(job_key(JOB), "labels", "not the label list")
    with caplog.at_level(logging.ERROR):
        assert complete(app, store, settings) == ASSEMBLY_QUEUED
    [error] = [r for r in caplog.records if "assembly here failed" in r.getMessage()]
    assert error.exc_info is not None and "JSONDecodeError" in caplog.text
    assert queued_assemblies(redis_server) == [[JOB, "clip.jsonl"]]
    assert store.meta(JOB)["state"] == QUEUED and store.stored(JOB) == {0}
    assert not list(settings.output_dir.glob("*"))  # not even a temporary file


def test_an_input_changed_since_its_chunks_is_superseded_not_written(
    app: Celery, store: JobStore, settings: Settings, source: Path, redis_server: RedisServer
) -> None:
    """The same outcome as the queued assembly: the producer then takes the file as it is."""
    queue(store, source, JOB)
    source.write_bytes(source.read_bytes().replace(b"comment 1", b"changed 1"))
    assert complete(app, store, settings).startswith("superseded")
    assert store.meta(JOB)["state"] == SUPERSEDED
    assert not output_of(settings, source).exists()
    assert queued_assemblies(redis_server) == []


def test_an_input_gone_since_its_chunks_is_superseded(
    app: Celery, store: JobStore, settings: Settings, source: Path
) -> None:
    queue(store, source, JOB)
    shutil.move(source, source.with_name("elsewhere.jsonl"))
    assert complete(app, store, settings) == "superseded: the input file disappeared"
    assert store.meta(JOB)["state"] == SUPERSEDED


def reads_of_one_assembly(
    app: Celery, store: JobStore, settings: Settings, source: Path, server: RedisServer, give: bool
) -> tuple[dict[str, int], bytes]:
    """Store the one chunk of ``source``, then complete the file with what that store read
    (``give``) or without; the Redis commands the completion ran, and the output."""
    queue(store, source, JOB, store_parts=False)
    labels = [label_of(r.comment) for r in iter_records(source)]
    stored = store.store_part_read(JOB, 0, labels, LABELS, "task-1")
    assert stored.outcome == 1
    admin = server.client()
    admin.config_resetstat()
    written = complete_file(
        app,
        store,
        settings,
        job=JOB,
        name="clip.jsonl",
        index=0,
        here=True,
        stored=stored if give else None,
    )
    stats = admin.info("commandstats")
    admin.close()
    assert written == str(output_of(settings, source))
    assert store.meta(JOB)["state"] == DONE
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}, Path(
        written
    ).read_bytes()


def test_what_storing_the_last_chunk_read_is_not_read_again(
    app: Celery, store: JobStore, settings: Settings, source: Path, redis_server: RedisServer
) -> None:
    """The job's metadata and the last chunk's labels come with the store: a one-chunk file's
    assembly then only ends the job (whose script reads one field), and writes the same file."""
    without, expected = reads_of_one_assembly(app, store, settings, source, redis_server, False)
    store.r.delete(job_key(JOB))
    output_of(settings, source).unlink()
    given, output = reads_of_one_assembly(app, store, settings, source, redis_server, True)
    # metadata, the chunk's labels, the end's own read
    assert (without["hgetall"], without["hmget"], without["hget"]) == (1, 1, 1)
    assert "hgetall" not in given and "hmget" not in given and given["hget"] == 1
    assert output == expected
