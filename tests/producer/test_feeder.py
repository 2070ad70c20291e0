"""producer.feeder.Feeder through a real producer on a real redis-server, no worker: never more
than ``window`` chunks queued or running over all files, the window shared round-robin, each
chunk sent once and always under its own index (also when Redis refuses a send mid-feed), and
a restarted producer resumes each file where its job stood (``sent``) instead of sending it
again."""

from __future__ import annotations

from typing import Any

import pytest

from emotions.constants import INFERENCE_QUEUE
from emotions.redisfaults import unavailable
from producer.daemon import Producer
from tests.producer.rig import Rig, comments

WINDOW = 3


def outstanding(rig: Rig, jobs: list[str]) -> int:
    """Chunks sent and not stored yet, over all jobs, as Redis records them."""
    total = 0
    for job in jobs:
        stored, _ = rig.store.progress(job)
        total += int(rig.store.meta(job)["sent"]) - stored
    return total


def cycle(p: Producer) -> None:
    """What the daemon does each second: read progress, then fill the window."""
    p.tracker.poll()
    p.tracker.feed()


def test_the_window_is_shared_round_robin(rig: Rig) -> None:
    p = rig.producer(chunk_size=1, window=WINDOW)
    paths = [rig.write(comments(4, tag), f"{tag}.json") for tag in ("a", "b")]
    p.take(paths)
    ja, jb = p.tracker.jobs
    p.tracker.feed()
    assert [a[:2] for a in rig.chunk_args()] == [[ja, 0], [jb, 0], [ja, 1]]
    p.tracker.feed()
    assert len(rig.chunk_args()) == WINDOW  # no room: nothing more
    running = rig.pop(2)  # two chunks taken by workers, still running
    cycle(p)
    assert len(rig.chunk_args()) == 1  # running chunks still count against the window
    for args in running:
        rig.complete(args)
    cycle(p)
    # b was fed less recently than a: it goes first, then they alternate.
    assert [a[:2] for a in rig.chunk_args()] == [[ja, 1], [jb, 1], [ja, 2]]
    assert outstanding(rig, [ja, jb]) == WINDOW
    assert rig.store.meta(ja)["sent"] == "3" and rig.store.meta(jb)["sent"] == "2"


def test_never_more_than_the_window_and_each_chunk_once_across_a_restart(rig: Rig) -> None:
    sizes = {"a": 5, "b": 1, "c": 7}
    paths = [rig.write(comments(n, tag), f"{tag}.json") for tag, n in sizes.items()]
    p = rig.producer(chunk_size=1, window=WINDOW)
    p.take(paths)
    jobs = list(p.tracker.jobs)
    seen: list[tuple[str, int]] = []
    texts: dict[tuple[str, int], list[str]] = {}

    def step(q: Producer, n: int) -> None:
        cycle(q)
        assert rig.client.llen(INFERENCE_QUEUE) <= WINDOW
        assert outstanding(rig, jobs) <= WINDOW
        for args in rig.pop(n):
            seen.append((args[0], args[1]))
            texts[(args[0], args[1])] = args[2]
            rig.complete(args, rig.apps[-1])

    for n in (0, 1, 2):
        step(p, n)
    # The producer restarts (a new process: new connections, submitter, feeder, tracker).
    q = rig.producer(chunk_size=1, window=WINDOW)
    q.take(paths)
    assert list(q.tracker.jobs) == jobs  # the same jobs, followed again
    assert [q.tracker.jobs[j].sent for j in jobs] == [int(rig.store.meta(j)["sent"]) for j in jobs]
    assert q.tracker.jobs[jobs[0]].sent > 0
    for _ in range(20):
        step(q, 2)
    assert sorted(seen) == sorted(
        (j, i) for j, n in zip(jobs, sizes.values(), strict=True) for i in range(n)
    )
    for job, (tag, n) in zip(jobs, sizes.items(), strict=True):
        assert [texts[(job, i)] for i in range(n)] == [[c["comment"]] for c in comments(n, tag)]
    assert sorted(a[0] for a in rig.assemblies()) == sorted(jobs)  # every file complete


def test_a_restart_resumes_at_sent_not_at_zero(rig: Rig) -> None:
    p = rig.producer(chunk_size=1, window=2)
    path = rig.write(comments(5))
    p.take([path])
    (job,) = p.tracker.jobs
    p.tracker.feed()
    assert rig.sent(job) == [0, 1]
    # The producer dies; the chunks already queued are still there, and get done.
    q = rig.producer(chunk_size=1, window=2)
    q.take([path])
    assert q.tracker.jobs[job].sent == 2
    cycle(q)
    assert rig.sent(job) == [0, 1]  # nothing sent twice, window still full
    rig.work()
    cycle(q)
    assert rig.sent(job) == [2, 3]


def test_a_window_of_one_goes_chunk_by_chunk(rig: Rig) -> None:
    p = rig.producer(chunk_size=2, window=1)
    path = rig.write(comments(5))
    p.take([path])
    assert len(p.tracker.jobs) == 1
    order: list[Any] = []
    for _ in range(5):
        cycle(p)
        assert len(rig.chunk_args()) <= 1
        for args in rig.pop():
            order.append((args[1], len(args[2])))
            rig.complete(args)
    assert order == [(0, 2), (1, 2), (2, 1)]


def test_a_small_file_behind_a_big_one_gets_the_next_free_chunk(rig: Rig) -> None:
    p = rig.producer(chunk_size=1, window=WINDOW)
    big = rig.write(comments(50, "big"), "big.json")
    p.take([big])
    (jbig,) = p.tracker.jobs
    cycle(p)
    assert rig.sent(jbig) == [0, 1, 2]
    p.take([rig.write(comments(1, "small"), "small.json")])
    jsmall = next(j for j in p.tracker.jobs if j != jbig)
    rig.work(n=1)  # one chunk of the big file finishes: the room goes to the new file
    cycle(p)
    assert [a[:2] for a in rig.chunk_args()] == [[jbig, 1], [jbig, 2], [jsmall, 0]]


def test_a_send_refused_mid_feed_never_shifts_an_index(rig: Rig) -> None:
    """Redis refuses writes (maxmemory reached, noeviction) part-way through a feed's batch:
    the chunks that got in before the refusal are not counted as sent, so they go again with
    the rest under their own indexes (a worker skips a copy whose labels are stored); no
    index is skipped or carries another chunk's text."""
    p = rig.producer(chunk_size=1, window=40)
    records = [{"id": f"r{i}", "comment": f"{i} " + "x" * 50_000} for i in range(30)]
    path = rig.write(records)
    p.take([path])
    (job,) = p.tracker.jobs
    used = int(rig.client.info("memory")["used_memory"])
    rig.client.config_set("maxmemory-policy", "noeviction")
    rig.client.config_set("maxmemory", used + 1_000_000)  # room for a few chunks, not for 30
    try:
        with pytest.raises(Exception) as refused:  # raw, or as kombu wraps it
            p.tracker.feed()
        assert unavailable(refused.value)
    finally:
        rig.client.config_set("maxmemory", 0)
    delivered = [a[1] for a in rig.chunk_args()]
    # Redis refuses each command on its own (memory freed meanwhile may let a later one in).
    assert 0 < len(delivered) < 30 and set(delivered) < set(range(30))
    assert p.tracker.jobs[job].sent == 0  # none counted: delivery was uncertain
    assert int(rig.store.meta(job)["sent"]) == 0
    p.tracker.feed()
    args = rig.chunk_args()
    assert [a[1] for a in args] == delivered + list(range(30))
    for a in args:  # every index carries exactly its own chunk's text
        assert a[2] == [records[a[1]]["comment"]]
    assert p.tracker.jobs[job].sent == 30


def test_a_resumed_file_that_no_longer_gives_its_chunk_count_supersedes_its_job(
    rig: Rig,
) -> None:
    """A restarted producer has no spool for a job it resumes: it checks the file again. Fewer
    chunks than the job was created with (the file changed): the job ends as superseded, so
    the file is taken again, instead of waiting forever one chunk short."""
    path = rig.write(comments(6))
    rig.producer(chunk_size=1, window=2).take([path])
    p = rig.producer(chunk_size=1, window=2)  # restarted
    p.take([path])
    (job,) = p.tracker.jobs
    assert p.tracker.jobs[job].layout is None  # resumed: no spool yet
    rig.write(comments(2))  # cut down before the resumed producer fed it
    p.tracker.feed()
    meta = rig.store.meta(job)
    assert meta["state"] == "superseded"
    assert "now has 2 records in 2 chunk(s), not 6 in 6" in meta["detail"]
    assert rig.sent(job) == []
