"""emotions.jobs.JobStore against a real redis-server: each chunk counts once, the assembly is
triggered exactly once, ended jobs take no parts, and nothing is left behind without a TTL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest
import redis

from emotions.constants import (
    DONE,
    FAILED,
    QUEUED,
    SUPERSEDED,
    assemble_lock_key,
    done_key,
    job_key,
    parts_key,
)
from emotions.jobs import JobStore
from harness.stack import RedisServer

TTL = 3600
JOB = "job-1"


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    s = JobStore(client, ttl=TTL)
    s.create(JOB, name="comments.json", model="m", digest="d1")
    return s


def part(index: int) -> bytes:
    return orjson.dumps({"id": str(index), "comment": f"c{index}", "emotion": "neutral"})


def keys_of(job: str) -> list[str]:
    return [job_key(job), parts_key(job), done_key(job), assemble_lock_key(job)]


def test_create_sets_queued_metadata_with_ttl(store: JobStore, client: redis.Redis) -> None:
    meta = store.meta(JOB)
    assert meta["state"] == QUEUED
    assert (meta["name"], meta["model"], meta["digest"]) == ("comments.json", "m", "d1")
    assert float(meta["created"]) > 0
    assert "total" not in meta
    assert 0 < client.ttl(job_key(JOB)) <= TTL
    assert store.progress(JOB) == (0, None)


def test_unknown_job_has_no_meta_and_takes_no_parts(store: JobStore, client: redis.Redis) -> None:
    assert store.meta("nope") == {}
    assert store.store_part("nope", 0, part(0)) == -1
    assert store.set_total("nope", 1, 1) == -1
    assert not client.exists(parts_key("nope"), done_key("nope"), job_key("nope"))


@pytest.mark.parametrize("total_after", [0, 1, 2, 3])
def test_assembly_is_triggered_exactly_once_on_the_normal_path(
    store: JobStore, total_after: int
) -> None:
    """Whenever the producer records the total (before, during or after the chunks)."""
    outcomes: list[int] = []
    for index in range(3):
        if index == total_after:
            outcomes.append(store.set_total(JOB, 3, 30))
        outcomes.append(store.store_part(JOB, index, part(index)))
    if total_after == 3:
        outcomes.append(store.set_total(JOB, 3, 30))
    assert outcomes.count(1) == 1
    assert outcomes[-1] == 1  # it fires on the step that completes the job, not before
    assert set(outcomes) <= {0, 1}
    assert store.progress(JOB) == (3, 3)


def test_same_index_stored_twice_counts_once(store: JobStore, client: redis.Redis) -> None:
    assert store.store_part(JOB, 0, part(0)) == 0
    assert store.store_part(JOB, 0, b"second run") == 0
    assert store.progress(JOB) == (1, None)
    assert client.scard(done_key(JOB)) == 1
    assert store.set_total(JOB, 2, 20) == 0  # one of two chunks done, not two
    assert store.store_part(JOB, 1, part(1)) == 1
    assert store.progress(JOB) == (2, 2)
    # The later run of a chunk wins; the count is unaffected.
    assert list(store.parts(JOB, 2)) == [b"second run", part(1)]


def test_redelivered_chunk_before_completion_does_not_trigger(store: JobStore) -> None:
    store.set_total(JOB, 3, 30)
    assert store.store_part(JOB, 0, part(0)) == 0
    assert store.store_part(JOB, 1, part(1)) == 0
    assert store.store_part(JOB, 1, part(1)) == 0
    assert store.store_part(JOB, 0, part(0)) == 0
    assert store.store_part(JOB, 2, part(2)) == 1


def test_set_total_after_all_parts_done_triggers(store: JobStore, client: redis.Redis) -> None:
    for index in range(4):
        assert store.store_part(JOB, index, part(index)) == 0
    assert store.set_total(JOB, 4, 40) == 1
    meta = store.meta(JOB)
    assert (meta["total"], meta["records"], meta["submitted"]) == ("4", "40", "1")
    assert client.exists(assemble_lock_key(JOB))
    # A producer that restarts and records the total again does not enqueue a second assembly.
    assert store.set_total(JOB, 4, 40) == 0


def test_empty_file_with_no_chunks_triggers_on_set_total(store: JobStore) -> None:
    assert store.set_total(JOB, 0, 0) == 1
    assert list(store.parts(JOB, 0)) == []


def test_duplicate_of_a_stored_chunk_of_a_complete_job_returns_1(store: JobStore) -> None:
    """Lost-assembly recovery: the worker crashed after storing the last chunk but before
    enqueueing the assembly; the redelivered chunk must enqueue it."""
    store.set_total(JOB, 2, 20)
    assert store.store_part(JOB, 0, part(0)) == 0
    assert store.store_part(JOB, 1, part(1)) == 1
    assert store.store_part(JOB, 1, part(1)) == 1
    assert store.store_part(JOB, 0, part(0)) == 1
    assert store.progress(JOB) == (2, 2)


def test_concurrent_workers_trigger_exactly_once(redis_server: RedisServer) -> None:
    total, workers = 60, 6
    clients = [redis_server.client() for _ in range(workers + 1)]
    setup = JobStore(clients[-1], ttl=TTL)
    setup.create(JOB, name="big.json", model="m", digest="d")
    setup.set_total(JOB, total, total)
    outcomes: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(workers)

    def work(offset: int) -> None:
        s = JobStore(clients[offset], ttl=TTL)  # one connection per worker
        barrier.wait()
        for index in range(offset, total, workers):
            result = s.store_part(JOB, index, part(index))
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(outcomes) == total
    assert outcomes.count(1) == 1 and outcomes.count(0) == total - 1
    assert setup.progress(JOB) == (total, total)
    for c in clients:
        c.close()


@pytest.mark.parametrize("end", ["fail", "supersede", "finish"])
def test_ended_jobs_reject_parts(end: str, store: JobStore, client: redis.Redis) -> None:
    store.store_part(JOB, 0, part(0))
    if end == "fail":
        assert store.fail(JOB, {"error": "CUDA error", "chunk": 1}) is True
    elif end == "supersede":
        assert store.supersede(JOB) is True
    else:
        assert store.finish(JOB, "/out/comments.json") is True
    assert store.store_part(JOB, 1, part(1)) == -1
    assert store.store_part(JOB, 0, part(0)) == -1
    assert store.set_total(JOB, 2, 20) == -1
    if end != "fail":
        # A late duplicate must not resurrect the freed results.
        assert not client.exists(parts_key(JOB), done_key(JOB), assemble_lock_key(JOB))


def test_fail_records_the_report_once(store: JobStore) -> None:
    error = {"error": "RuntimeError: CUDA error", "chunk": 3, "file": "comments.json"}
    assert store.fail(JOB, error) is True
    meta = store.meta(JOB)
    assert meta["state"] == FAILED
    assert orjson.loads(meta["detail"]) == error
    assert float(meta["finished"]) >= float(meta["created"])
    # The first end wins: a second failure or a late finish does not overwrite it.
    assert store.fail(JOB, {"error": "other"}) is False
    assert store.finish(JOB, "/out/x.json") is False
    assert store.meta(JOB)["state"] == FAILED
    assert orjson.loads(store.meta(JOB)["detail"]) == error


def test_supersede_marks_and_drops_results(store: JobStore, client: redis.Redis) -> None:
    store.store_part(JOB, 0, part(0))
    assert store.supersede(JOB) is True
    assert store.meta(JOB)["state"] == SUPERSEDED
    assert "replaced" in orjson.loads(store.meta(JOB)["detail"])["error"]
    assert not client.exists(parts_key(JOB), done_key(JOB))


def test_finish_drops_parts_done_and_lock_keys(store: JobStore, client: redis.Redis) -> None:
    store.set_total(JOB, 2, 20)
    store.store_part(JOB, 0, part(0))
    store.store_part(JOB, 1, part(1))
    assert client.exists(parts_key(JOB), done_key(JOB), assemble_lock_key(JOB)) == 3
    assert store.finish(JOB, "/out/comments.json") is True
    assert client.exists(parts_key(JOB), done_key(JOB), assemble_lock_key(JOB)) == 0
    meta = store.meta(JOB)
    assert meta["state"] == DONE
    assert orjson.loads(meta["detail"]) == {"output": "/out/comments.json"}
    assert 0 < client.ttl(job_key(JOB)) <= TTL  # the job record itself still expires
    assert store.finish(JOB, "/out/comments.json") is False


def test_every_key_has_a_ttl(store: JobStore, client: redis.Redis) -> None:
    store.store_part(JOB, 0, part(0))
    store.set_total(JOB, 2, 20)
    store.store_part(JOB, 1, part(1))
    for key in keys_of(JOB):
        assert client.exists(key), key
        assert 0 < client.ttl(key) <= TTL, key
    store.fail(JOB, {"error": "x"})
    assert 0 < client.ttl(job_key(JOB)) <= TTL
    # Nothing this job wrote lives forever.
    for key in client.scan_iter("*"):
        assert client.ttl(key) > 0, key


def test_parts_iterate_in_chunk_order(store: JobStore) -> None:
    total = 12  # more than 9, so a lexical order ("10" < "2") would show
    for index in [5, 11, 0, 10, 2, 9, 1, 3, 8, 4, 7, 6]:
        store.store_part(JOB, index, part(index))
    assert list(store.parts(JOB, total)) == [part(i) for i in range(total)]


def test_parts_yield_none_for_a_missing_chunk(store: JobStore) -> None:
    store.store_part(JOB, 0, part(0))
    store.store_part(JOB, 2, part(2))
    assert list(store.parts(JOB, 3)) == [part(0), None, part(2)]


def test_parts_keep_bytes_exactly(store: JobStore) -> None:
    payload = orjson.dumps({"id": "é", "comment": 'هذا 😂\n"quoted"', "emotion": "joy"})
    store.store_part(JOB, 0, payload)
    store.store_part(JOB, 1, b"")  # a chunk whose records were all empty is still a part
    assert list(store.parts(JOB, 2)) == [payload, b""]


def test_jobs_are_independent(store: JobStore) -> None:
    store.create("job-2", name="other.json", model="m", digest="d2")
    store.set_total(JOB, 1, 1)
    store.set_total("job-2", 1, 1)
    assert store.store_part("job-2", 0, b"two") == 1
    assert store.progress(JOB) == (0, 1)
    store.fail(JOB, {"error": "x"})
    assert store.meta("job-2")["state"] == QUEUED
    assert list(store.parts("job-2", 1)) == [b"two"]
