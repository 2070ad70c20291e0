"""The order in which a producer takes files (producer.queue, producer.daemon) on a real
redis-server and real folders: each file once however often rescans find it, a new file
before a rescanned backlog, files in flight at a restart by first-seen time (not by name),
no more taken ahead of the feed than FEED_AHEAD_FILES, and checking a big file feeds the
window meanwhile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from watchdog.events import FileCreatedEvent

from emotions.constants import FEED_AHEAD_FILES
from producer.daemon import Producer
from producer.queue import ANNOUNCED, RESUMED, SCANNED, ReadyQueue
from tests.producer.rig import Rig, comments


def settle(p: Producer) -> None:
    """Two looks at the candidates (settle time 0): every unchanged file is complete."""
    p.queue(p.candidates.settle())
    p.queue(p.candidates.settle())


def order(p: Producer) -> list[str]:
    out = []
    while (path := p.ready.pop()) is not None:
        out.append(path.name)
    return out


def test_ready_queue_holds_each_file_once_in_class_then_time_order(tmp_path: Path) -> None:
    q = ReadyQueue(tmp_path)
    a, b, c, d = (tmp_path / n for n in "abcd")
    q.push(a, SCANNED, 1.0)
    q.push(b, ANNOUNCED, 5.0)
    q.push(c, RESUMED, 9.0)
    q.push(a, ANNOUNCED, 0.0)  # already queued: keeps its place
    q.push(d, ANNOUNCED, 2.0)
    assert len(q) == 4 and a in q
    assert [q.pop() for _ in range(2)] == [c, d]
    q.again(c)  # its take was interrupted
    assert [q.pop() for _ in range(4)] == [c, b, a, None]


def test_rescans_nominate_a_waiting_file_once(rig: Rig) -> None:
    p = rig.producer(settle_seconds=0)
    for i in range(5):
        rig.write(comments(1, f"f{i}"), f"f{i}.json")
    for _ in range(3):  # rescans while nothing is taken
        p.candidates.scan()
        settle(p)
    assert len(p.ready) == 5 and p.candidates.pending() == set()


def test_a_new_file_goes_before_a_rescanned_backlog(rig: Rig) -> None:
    p = rig.producer(settle_seconds=0)
    for i in range(5):
        rig.write(comments(1, f"old{i}"), f"old{i}.json")
    p.candidates.scan()
    settle(p)
    new = rig.write(comments(1, "new"), "new.json")
    p.candidates.on_created(FileCreatedEvent(str(new)))  # as watchdog's observer calls it
    settle(p)
    assert order(p)[0] == "new.json"


def test_after_a_restart_files_in_flight_resume_by_first_seen_time(rig: Rig) -> None:
    p = rig.producer(settle_seconds=0)
    for name in ("zz.json", "mm.json", "aa.json"):
        p.take([rig.write(comments(2, name[0]), name)])  # seen in this order
        time.sleep(0.01)
    rig.write(comments(1, "b"), "bb.json")  # never taken
    q = rig.producer(settle_seconds=0)  # the restarted producer
    q.start()
    q.candidates.scan()
    settle(q)
    assert order(q) == ["zz.json", "mm.json", "aa.json", "bb.json"]
    q.stop()


def test_taking_stops_while_enough_taken_files_wait_to_be_fed(rig: Rig) -> None:
    p = rig.producer()
    paths = [rig.write(comments(1, f"f{i}"), f"f{i:02d}.json") for i in range(FEED_AHEAD_FILES + 8)]
    p.take(paths)
    assert len(p.tracker.jobs) == FEED_AHEAD_FILES and len(rig.jobs()) == FEED_AHEAD_FILES
    assert len(p.ready) == 8  # the rest wait in the producer, not as jobs in Redis
    p.tracker.feed()  # fed: room to take more
    p.take()
    assert len(p.tracker.jobs) == FEED_AHEAD_FILES + 8 and len(p.ready) == 0


def test_the_loop_turns_again_at_once_while_files_wait_and_the_window_has_room(
    rig: Rig,
) -> None:
    """A turn takes FEED_AHEAD_FILES files, then feeds them: with more waiting and room in the
    window, the loop goes on without its pause; it pauses once the window is full, once
    nothing waits, and while Redis is down."""
    p = rig.producer(window=FEED_AHEAD_FILES + 4)
    count = FEED_AHEAD_FILES + 8
    paths = [rig.write(comments(1, f"f{i}"), f"f{i:02d}.json") for i in range(count)]
    for path in paths:
        p.ready.push(path, ANNOUNCED)
    assert p.eager()  # nothing fed yet: room, and files wait
    p.step()
    assert len(p.tracker.jobs) == FEED_AHEAD_FILES and len(p.ready) == 8
    assert p.eager()  # fed: 4 chunks of room left, 8 files wait
    p.step()
    assert len(p.ready) == 0 and not p.eager()  # nothing waits
    assert sum(len(rig.sent(job)) for job in p.tracker.jobs) == FEED_AHEAD_FILES + 4
    p.ready.push(rig.write(comments(1, "late"), "late.json"), ANNOUNCED)
    assert not p.eager()  # the window is full: a pause lets chunks finish
    p._down_since = time.monotonic()
    rig.work()
    p.tracker.poll()
    assert not p.eager()  # Redis down: the loop waits, as always
    p._down_since = None
    assert p.eager()


def test_checking_a_big_file_feeds_the_window_meanwhile(rig: Rig) -> None:
    p = rig.producer(chunk_size=1, window=2)
    p.take([rig.write(comments(6, "a"), "a.json")])
    (ja,) = p.tracker.jobs
    p.tracker.feed()
    assert rig.sent(ja) == [0, 1]
    rig.work()  # both finish: the window has room, but the loop is busy checking...
    p._next_poll = 0.0  # (a poll is due)
    p.take([rig.write(comments(3000, "big"), "big.json")])  # ...a file of 3,000 chunks
    assert rig.sent(ja) == [2, 3]  # fed during the check, not after it
    assert len(p.tracker.jobs) == 2


def test_an_error_feeding_during_a_check_never_fails_the_checked_file(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = rig.producer(chunk_size=1)

    def broken() -> None:
        raise RuntimeError("a bug in the tracker")

    monkeypatch.setattr(p.tracker, "poll", broken)
    p._next_poll = 0.0
    p.take([rig.write(comments(20, "big"), "big.json")])
    assert len(p.tracker.jobs) == 1 and p.failed.count == 0


def test_redis_lost_during_a_check_puts_the_file_back_first(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = rig.producer(chunk_size=1)
    waiting = rig.write(comments(1, "w"), "waiting.json")
    big = rig.write(comments(20, "big"), "big.json")

    def down() -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(p.tracker, "poll", down)
    p.ready.push(waiting, SCANNED)
    p._next_poll = 0.0
    with pytest.raises(redis.ConnectionError):
        p.take([big])
    assert p.tracker.jobs == {} and p.ready.pop() == big and p.ready.pop() == waiting
