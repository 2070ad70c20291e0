"""emotions.jobs.JobStore against a real redis-server: starts are counted (and a chunk begun
too often fails its job), each chunk counts once, the assembly is triggered exactly once even
with concurrent workers, ended jobs take no parts and free them at once, a job's labels must
all come from one model, and nothing is left behind without a TTL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import orjson
import pytest
import redis

from emotions.constants import (
    DONE,
    FAILED,
    PARTS_PER_FETCH,
    QUEUED,
    SUPERSEDED,
    assemble_lock_key,
    job_key,
    parts_key,
    starts_key,
)
from emotions.errors import PermanentError
from emotions.jobs import (
    ALREADY,
    GIVE_UP,
    GO,
    REASSEMBLE,
    SKIP,
    JobStore,
    decode_labels,
    encode_labels,
)
from harness.stack import RedisServer

TTL = 3600
JOB = "job-1"
TOTAL = 3
LABELS = ["admiration", "joy", "neutral"]
DETAIL = {"error": "chunk begun too often", "chunk": 0}


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    s = JobStore(client, ttl=TTL)
    s.create(JOB, name="comments.json", model="hub:m@main", digest="d1", total=TOTAL, records=7)
    return s


def keys_of(job: str) -> list[str]:
    return [job_key(job), parts_key(job), starts_key(job), assemble_lock_key(job)]


def run_chunk(store: JobStore, index: int, job: str = JOB, labels: list[str] = LABELS) -> int:
    """What a worker does with one chunk: count the start, then store its labels."""
    assert store.begin(job, index, 5, DETAIL) == GO
    return store.store_part(job, index, [index % len(labels)], labels)


def end_job(store: JobStore, end: str, job: str = JOB) -> bool:
    if end == "fail":
        return store.fail(job, {"error": "CUDA error", "chunk": 1})
    if end == "supersede":
        return store.supersede(job)
    return store.finish(job, "/out/comments.json")


# --- create / meta ------------------------------------------------------------------------


def test_create_sets_queued_metadata_with_ttl(store: JobStore, client: redis.Redis) -> None:
    meta = store.meta(JOB)
    assert meta["state"] == QUEUED
    assert (meta["name"], meta["model"], meta["digest"]) == ("comments.json", "hub:m@main", "d1")
    assert (meta["total"], meta["records"], meta["sent"]) == ("3", "7", "0")
    assert float(meta["created"]) > 0
    assert 0 < client.ttl(job_key(JOB)) <= TTL
    assert store.progress(JOB) == (0, TOTAL)
    assert store.stored(JOB) == set()


def test_meta_keeps_a_non_utf8_path(store: JobStore) -> None:
    """Linux names need not be UTF-8: the path the assembly re-reads must come back exactly."""
    raw = b"/data/input/caf\xe9.json"
    store.rename(JOB, "caf\\xe9.json", raw, "caf_xe9.json")
    meta = store.meta(JOB)
    assert meta["path"].encode("utf-8", "surrogateescape") == raw
    assert meta["name"] == "caf\\xe9.json"


def test_unknown_job_has_no_meta_and_takes_nothing(store: JobStore, client: redis.Redis) -> None:
    assert store.meta("nope") == {}
    assert store.begin("nope", 0, 5, DETAIL) == SKIP
    assert store.store_part("nope", 0, [1], LABELS) == -1
    assert store.progress("nope") == (0, None)
    assert not client.exists(*keys_of("nope"))


def test_mark_sent_is_recorded_for_a_restarted_producer(store: JobStore) -> None:
    store.mark_sent(JOB, 2)
    assert store.meta(JOB)["sent"] == "2"


# --- begin: counting starts ---------------------------------------------------------------


def test_begin_counts_every_start_of_a_chunk(store: JobStore, client: redis.Redis) -> None:
    for n in range(1, 4):
        assert store.begin(JOB, 1, 5, DETAIL) == GO
        assert client.hget(starts_key(JOB), "1") == str(n).encode()
    assert client.hget(starts_key(JOB), "0") is None  # per chunk, not per job


def test_unbegin_takes_back_one_start_never_below_zero(
    store: JobStore, client: redis.Redis
) -> None:
    """A chunk handed back because Redis was unavailable gives its start back: however often
    that happens, it never reaches the limit that fails its file."""
    for _ in range(20):
        assert store.begin(JOB, 1, 5, DETAIL) == GO
        store.unbegin(JOB, 1)
    assert client.hget(starts_key(JOB), "1") == b"0"
    store.unbegin(JOB, 1)
    store.unbegin(JOB, 2)  # never begun
    assert client.hget(starts_key(JOB), "1") == b"0"
    assert client.hget(starts_key(JOB), "2") is None


def test_begin_of_a_stored_chunk_is_already(store: JobStore, client: redis.Redis) -> None:
    run_chunk(store, 0)
    starts = client.hget(starts_key(JOB), "0")
    assert store.begin(JOB, 0, 5, DETAIL) == ALREADY
    assert client.hget(starts_key(JOB), "0") == starts  # a redelivered duplicate is no start


def test_begin_once_too_often_fails_the_job_with_the_detail(
    store: JobStore, client: redis.Redis
) -> None:
    """A chunk that kills its worker every time never reports anything itself: the start
    counter is what ends its file."""
    run_chunk(store, 0)
    for _ in range(3):
        assert store.begin(JOB, 1, 3, DETAIL) == GO
    assert store.meta(JOB)["state"] == QUEUED
    assert store.begin(JOB, 1, 3, DETAIL) == GIVE_UP
    meta = store.meta(JOB)
    assert meta["state"] == FAILED
    assert orjson.loads(meta["detail"]) == DETAIL
    assert float(meta["finished"]) >= float(meta["created"])
    assert not client.exists(parts_key(JOB), starts_key(JOB))  # freed at once
    assert 0 < client.ttl(job_key(JOB)) <= TTL
    # Everything after that is inert.
    assert store.begin(JOB, 2, 3, DETAIL) == SKIP
    assert store.store_part(JOB, 1, [0], LABELS) == -1
    assert store.progress(JOB) == (0, TOTAL)


def test_begin_max_starts_zero_gives_up_at_the_first_start(store: JobStore) -> None:
    assert store.begin(JOB, 0, 0, DETAIL) == GIVE_UP
    assert store.meta(JOB)["state"] == FAILED


@pytest.mark.parametrize("end", ["fail", "supersede", "finish"])
def test_begin_on_an_ended_job_is_skip(end: str, store: JobStore, client: redis.Redis) -> None:
    assert end_job(store, end) is True
    assert store.begin(JOB, 0, 5, DETAIL) == SKIP
    assert not client.exists(starts_key(JOB))  # nothing counted for a dead job


# --- store: each chunk counts once, the assembly exactly once --------------------------------


def test_assembly_is_triggered_by_the_last_chunk_only(store: JobStore) -> None:
    assert [run_chunk(store, i) for i in (2, 0, 1)] == [0, 0, 1]
    assert store.progress(JOB) == (3, 3)
    assert store.stored(JOB) == {0, 1, 2}


def test_same_index_stored_twice_counts_once(store: JobStore) -> None:
    assert run_chunk(store, 0) == 0
    assert store.store_part(JOB, 0, [2, 2], LABELS) == 0  # a second run of the same chunk
    assert store.progress(JOB) == (1, TOTAL)
    assert run_chunk(store, 1) == 0  # two of three, not three
    assert run_chunk(store, 2) == 1
    assert next(store.parts(JOB, TOTAL)) == bytes([2, 2])  # the later run wins


def test_duplicate_of_a_stored_chunk_of_a_complete_job(store: JobStore) -> None:
    """The guard keeps duplicates from queueing a second assembly; once it is released (an
    assembly found labels missing, or a heal), a duplicate queues it again: the lost-assembly
    case."""
    for i in range(TOTAL):
        run_chunk(store, i)
    assert store.store_part(JOB, 1, [1], LABELS) == 0
    assert store.claim_assembly(JOB) is False
    store.release_assembly(JOB)
    assert store.store_part(JOB, 1, [1], LABELS) == 1
    assert store.store_part(JOB, 0, [0], LABELS) == 0
    store.release_assembly(JOB)
    assert store.claim_assembly(JOB) is True
    assert store.claim_assembly(JOB) is False


def test_claim_assembly_of_an_empty_job(store: JobStore) -> None:
    """A file with no records has no chunk to trigger its assembly: the producer claims it."""
    store.create("empty", name="e.json", total=0, records=0)
    assert store.claim_assembly("empty") is True
    assert store.claim_assembly("empty") is False


def test_concurrent_workers_trigger_exactly_once(redis_server: RedisServer) -> None:
    total, workers = 60, 6
    clients = [redis_server.client() for _ in range(workers + 1)]
    setup = JobStore(clients[-1], ttl=TTL)
    setup.create(JOB, name="big.json", total=total, records=total)
    outcomes: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(workers)

    def work(offset: int) -> None:
        s = JobStore(clients[offset], ttl=TTL)  # one connection per worker
        barrier.wait()
        # Every worker runs every chunk (as if each were redelivered to all of them).
        for index in range(total):
            index = (index + offset * 7) % total
            begun = s.begin(JOB, index, 100, DETAIL)
            result = s.store_part(JOB, index, [index % 3], LABELS) if begun == GO else -9
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == total * workers
    assert outcomes.count(1) == 1
    assert set(outcomes) <= {0, 1, -9}
    assert setup.progress(JOB) == (total, total)
    assert [decode_labels(p or b"") for p in setup.parts(JOB, total)] == [
        [i % 3] for i in range(total)
    ]
    for c in clients:
        c.close()


def test_labels_of_another_model_are_refused(store: JobStore) -> None:
    """Two workers with different models must not mix their labels in one file."""
    assert run_chunk(store, 0) == 0
    assert store.meta(JOB)["labels"] == orjson.dumps(LABELS).decode()
    other = ["anger", "joy", "neutral"]
    assert store.begin(JOB, 1, 5, DETAIL) == GO
    assert store.store_part(JOB, 1, [0], other) == -3
    assert store.store_part(JOB, 1, [0], LABELS[:2]) == -3  # fewer labels: another model too
    assert store.stored(JOB) == {0}
    assert run_chunk(store, 1) == 0  # the right labels are still taken


def test_parts_are_one_byte_per_comment(store: JobStore, client: redis.Redis) -> None:
    assert store.begin(JOB, 0, 5, DETAIL) == GO
    store.store_part(JOB, 0, [27, 0, 3, 255], LABELS)
    raw = client.hget(parts_key(JOB), "0")
    assert raw == b"\x1b\x00\x03\xff"
    assert decode_labels(raw) == [27, 0, 3, 255]


def test_encode_labels_refuses_more_than_256_labels() -> None:
    assert encode_labels([]) == b""
    assert decode_labels(encode_labels(list(range(256)))) == list(range(256))
    with pytest.raises(PermanentError, match="256"):
        encode_labels([256])


def test_parts_iterate_in_chunk_order(client: redis.Redis) -> None:
    store = JobStore(client, ttl=TTL)
    total = 12  # more than 9, so a lexical order ("10" < "2") would show
    store.create(JOB, total=total)
    for index in [5, 11, 0, 10, 2, 9, 1, 3, 8, 4, 7, 6]:
        store.store_part(JOB, index, [index], LABELS)
    assert list(store.parts(JOB, total)) == [bytes([i]) for i in range(total)]


def test_parts_yield_none_for_a_missing_chunk(store: JobStore) -> None:
    run_chunk(store, 0)
    run_chunk(store, 2)
    assert list(store.parts(JOB, 3)) == [b"\x00", None, b"\x02"]


def test_parts_are_fetched_a_batch_per_round_trip(client: redis.Redis) -> None:
    """Batches of chunks in order across batch ends, missing ones as None, and the labels the
    caller already holds (a whole batch of them here) without asking Redis."""
    store = JobStore(client, ttl=TTL)
    total = 2 * PARTS_PER_FETCH + 5
    missing = {3, PARTS_PER_FETCH - 1, total - 1}
    known = {i: b"known" for i in range(PARTS_PER_FETCH, 2 * PARTS_PER_FETCH)}
    store.create(JOB, total=total)
    for index in set(range(total)) - missing:
        store.store_part(JOB, index, [index % 28], LABELS * 10)
    client.config_resetstat()
    got = list(store.parts(JOB, total, known))
    assert hmget_calls(client) == 2
    assert got == [known.get(i, None if i in missing else bytes([i % 28])) for i in range(total)]


def hmget_calls(client: redis.Redis) -> int:
    """HMGET commands since the statistics were reset (and never an HGET)."""
    stats = client.info("commandstats")
    assert "cmdstat_hget" not in stats
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


# --- ending a job ------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["fail", "supersede", "finish"])
def test_ended_jobs_take_no_parts_and_free_them_at_once(
    end: str, store: JobStore, client: redis.Redis
) -> None:
    run_chunk(store, 0)
    run_chunk(store, 1)
    assert client.exists(parts_key(JOB), starts_key(JOB)) == 2
    assert end_job(store, end) is True
    assert not client.exists(parts_key(JOB), starts_key(JOB), assemble_lock_key(JOB))
    # A late chunk (or duplicate) neither stores nor resurrects anything.
    assert store.store_part(JOB, 2, [0], LABELS) == -1
    assert store.store_part(JOB, 0, [0], LABELS) == -1
    assert not client.exists(parts_key(JOB), starts_key(JOB), assemble_lock_key(JOB))
    assert 0 < client.ttl(job_key(JOB)) <= TTL  # the ended record itself still expires


def test_finish_frees_the_assembly_guard_too(store: JobStore, client: redis.Redis) -> None:
    for i in range(TOTAL):
        run_chunk(store, i)
    assert client.exists(*keys_of(JOB)) == 4
    assert store.finish(JOB, "/out/comments.json") is True
    assert client.exists(*keys_of(JOB)) == 1
    meta = store.meta(JOB)
    assert meta["state"] == DONE
    assert orjson.loads(meta["detail"]) == {"output": "/out/comments.json"}
    assert store.finish(JOB, "/out/comments.json") is False


def test_first_end_wins(store: JobStore) -> None:
    error = {"error": "RuntimeError: CUDA error", "chunk": 2, "file": "comments.json"}
    assert store.fail(JOB, error) is True
    assert store.fail(JOB, {"error": "other"}) is False
    assert store.finish(JOB, "/out/x.json") is False
    assert store.supersede(JOB) is False
    meta = store.meta(JOB)
    assert meta["state"] == FAILED
    assert orjson.loads(meta["detail"]) == error


def test_supersede_says_why(store: JobStore) -> None:
    assert store.supersede(JOB) is True
    meta = store.meta(JOB)
    assert meta["state"] == SUPERSEDED
    assert "replaced" in orjson.loads(meta["detail"])["error"]
    store.create("j2", total=1)
    store.supersede("j2", "the input file disappeared")
    assert orjson.loads(store.meta("j2")["detail"]) == {"error": "the input file disappeared"}


# --- TTLs -----------------------------------------------------------------------------------


def test_every_key_has_a_ttl(store: JobStore, client: redis.Redis) -> None:
    store.mark_sent(JOB, TOTAL)
    for i in range(TOTAL):
        run_chunk(store, i)
    store.rename(JOB, "renamed.json", b"/in/renamed.json", "renamed.json")
    for key in keys_of(JOB):
        assert client.exists(key), key
        assert 0 < client.ttl(key) <= TTL, key
    store.create("j2", total=2)
    store.begin("j2", 0, 0, DETAIL)  # gives up: failed
    store.create("j3", total=2)
    run_chunk(store, 0, "j3")
    store.supersede("j3")
    keys = list(client.scan_iter("*"))
    assert len(keys) >= 6
    for key in keys:
        assert client.ttl(key) > 0, key  # nothing a job wrote lives forever


def test_touch_restarts_the_ttl_of_a_waiting_job(store: JobStore, client: redis.Redis) -> None:
    run_chunk(store, 0)
    for key in (job_key(JOB), parts_key(JOB), starts_key(JOB)):
        client.expire(key, 5)
    store.touch(JOB)
    for key in (job_key(JOB), parts_key(JOB), starts_key(JOB)):
        assert client.ttl(key) > TTL - 10, key


def test_jobs_are_independent(store: JobStore) -> None:
    store.create("job-2", name="other.json", total=1)
    assert run_chunk(store, 0, "job-2") == 1
    assert store.progress(JOB) == (0, TOTAL)
    store.fail(JOB, {"error": "x"})
    assert store.meta("job-2")["state"] == QUEUED
    assert list(store.parts("job-2", 1)) == [b"\x00"]


def test_a_message_that_stored_the_last_chunk_is_told_to_queue_the_assembly_again(
    store: JobStore,
) -> None:
    """Its worker may have died (or failed to publish) between the store and the queueing:
    when the same message comes again, BEGIN says REASSEMBLE; other copies of the chunk, and
    copies of other chunks, are plain duplicates."""
    for index in range(TOTAL - 1):
        assert store.begin(JOB, index, 5, DETAIL, f"task-{index}") == GO
        assert store.store_part(JOB, index, [0], LABELS, f"task-{index}") == 0
    last = TOTAL - 1
    assert store.begin(JOB, last, 5, DETAIL, "task-last") == GO
    assert store.store_part(JOB, last, [0], LABELS, "task-last") == 1  # took the guard
    assert store.begin(JOB, last, 5, DETAIL, "task-last") == REASSEMBLE
    assert store.begin(JOB, last, 5, DETAIL, "a-resent-copy") == ALREADY
    assert store.begin(JOB, last, 5, DETAIL) == ALREADY  # no token: never
    assert store.begin(JOB, 0, 5, DETAIL, "task-0") == ALREADY  # did not take the guard
    store.finish(JOB, "out.json")
    assert store.begin(JOB, last, 5, DETAIL, "task-last") == SKIP  # the file is written


def test_storing_the_last_chunk_returns_what_the_assembly_reads(store: JobStore) -> None:
    """The chunk that completes the job gets the job's metadata (as ``meta`` reads it, its
    label names included) and its own stored labels with the outcome; the others get neither."""
    for index in range(TOTAL - 1):
        assert store.begin(JOB, index, 5, DETAIL) == GO
        assert store.store_part_read(JOB, index, [index], LABELS) == (0, {}, {})
    assert store.begin(JOB, TOTAL - 1, 5, DETAIL) == GO
    outcome, meta, known = store.store_part_read(JOB, TOTAL - 1, [2, 0], LABELS, "task-1")
    assert outcome == 1
    assert meta == store.meta(JOB)
    assert meta["state"] == QUEUED and orjson.loads(meta["labels"]) == LABELS
    assert known == {TOTAL - 1: encode_labels([2, 0])}
    assert next(store.parts(JOB, TOTAL, {})) == encode_labels([0])
    assert list(store.parts(JOB, TOTAL, known))[TOTAL - 1] == bytes([2, 0])


def test_known_parts_are_not_read_again(store: JobStore, client: redis.Redis) -> None:
    """``parts`` yields a known chunk's labels as given, without asking Redis; the others it
    reads, in one round trip (a known chunk absent from Redis would otherwise read as
    missing)."""
    run_chunk(store, 0)
    client.config_resetstat()
    parts = list(store.parts(JOB, TOTAL, {1: b"\x05"}))
    assert parts == [encode_labels([0]), b"\x05", None]
    assert hmget_calls(client) == 1


def test_a_job_ended_before_its_last_chunk_returns_no_metadata(store: JobStore) -> None:
    for index in range(TOTAL - 1):
        run_chunk(store, index)
    store.supersede(JOB)
    assert store.store_part_read(JOB, TOTAL - 1, [1], LABELS) == (-1, {}, {})


def test_labels_of_another_model_return_no_metadata(store: JobStore) -> None:
    for index in range(TOTAL - 1):
        run_chunk(store, index)
    assert store.store_part_read(JOB, TOTAL - 1, [1], ["other"]) == (-3, {}, {})
