"""One turn of the producer's loop (real Redis): files taken in a turn are sent in that turn,
not at the next poll, and a window that looks full is polled at once to free the room of the
chunks finished meanwhile. Together they let a folder of small files flow at the rate of
the turns instead of one window per second. A job just created is not touched again at its
first poll (a round trip per small file); a resumed one is."""

from __future__ import annotations

import time

from emotions.constants import TOUCH_SECONDS
from emotions.jobs import job_key
from harness.stack import write_json
from producer.daemon import Producer
from producer.queue import ANNOUNCED
from tests.producer.rig import Rig, comments


def no_poll_due(producer: Producer) -> None:
    """The once-a-second poll is far off: only the turn's own rules can feed or poll."""
    producer._next_poll = time.monotonic() + 3600


def queue_files(rig: Rig, producer: Producer, n: int) -> None:
    for i in range(n):
        producer.ready.push(write_json(rig.input / f"v{i}.json", comments(2, f"v{i}-")), ANNOUNCED)


def test_files_taken_in_a_turn_are_sent_in_that_turn(rig: Rig) -> None:
    producer = rig.producer()
    no_poll_due(producer)
    queue_files(rig, producer, 5)
    producer.step()
    assert len(producer.tracker.jobs) == 5
    assert sorted(a[4] for a in rig.chunk_args()) == [f"v{i}.json" for i in range(5)]


def test_a_full_window_is_polled_in_the_next_turn(rig: Rig) -> None:
    producer = rig.producer(window=2)
    no_poll_due(producer)
    queue_files(rig, producer, 4)
    producer.step()
    assert len(rig.chunk_args()) == 2  # the window: two of the four files' chunks
    assert producer.tracker.starved()
    producer.step()
    assert len(rig.chunk_args()) == 2  # nothing finished: the poll frees no room
    assert rig.work() == [1, 1]  # a worker finishes both
    producer.step()
    assert sorted(a[4] for a in rig.chunk_args()) == ["v2.json", "v3.json"]
    assert not producer.tracker.starved()  # nothing unsent any more


def test_a_new_job_is_not_touched_at_its_first_poll_but_later_is(rig: Rig) -> None:
    """A job just created has fresh TTLs: touching it again at once would cost every small
    file a round trip. After TOUCH_SECONDS it is touched as before (a backlog must not
    expire)."""
    producer = rig.producer(result_ttl=600)
    no_poll_due(producer)
    queue_files(rig, producer, 1)
    producer.step()
    (job,) = producer.tracker.jobs
    rig.client.expire(job_key(job), 30)  # as if the TTL had run down
    producer.tracker.poll()
    assert rig.client.ttl(job_key(job)) <= 30  # not touched
    producer.tracker.jobs[job].touched -= TOUCH_SECONDS  # as if that much time had passed
    producer.tracker.poll()
    assert rig.client.ttl(job_key(job)) > 500  # touched: the full TTL again


def test_a_resumed_job_is_touched_at_its_first_poll(rig: Rig) -> None:
    first = rig.producer(result_ttl=600)
    no_poll_due(first)
    queue_files(rig, first, 1)
    first.step()
    (job,) = first.tracker.jobs
    first.stop()
    rig.client.expire(job_key(job), 30)
    again = rig.producer(result_ttl=600)  # a restarted producer resumes the job
    again.start()
    no_poll_due(again)
    again.queue([(rig.input / "v0.json", False)])
    again.step()
    assert list(again.tracker.jobs) == [job]
    again.tracker.poll()
    assert rig.client.ttl(job_key(job)) > 500
