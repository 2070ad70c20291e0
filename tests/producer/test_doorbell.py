"""A producer whose window is full waits for the workers' notes (real Redis): it refills once a
share of the window is stored, not at the next tick; without notes it turns every tick as
before; a lost listener (Redis gone) never raises and is made again; each folder hears only
its own jobs' notes."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
import redis

from emotions.constants import (
    GATHER_SECONDS,
    LISTEN_RETRY_SECONDS,
    NOTES_TRUSTED_SECONDS,
    job_key,
    parts_key,
    stored_channel,
)
from emotions.jobs import JobStore
from harness.stack import RedisServer
from producer.daemon import LISTEN_BETWEEN_SECONDS, POLL_SECONDS, TICK, Producer
from producer.doorbell import Doorbell
from producer.ledger import folder_id
from producer.queue import ANNOUNCED
from tests.producer.rig import Rig, comments, make_rig
from tests.producer.test_turns import no_poll_due, queue_files


def starved(rig: Rig, window: int, files: int) -> Producer:
    """A producer that sent a full window of one-chunk files and has more to send."""
    producer = rig.producer(window=window)
    no_poll_due(producer)
    queue_files(rig, producer, files)
    producer.step()
    assert len(rig.chunk_args()) == window
    assert producer.tracker.starved()
    assert producer.doorbell.listen(0.0)  # subscribed (notes published before would be lost)
    return producer


def timed(producer: Producer) -> tuple[str, float]:
    start = time.monotonic()
    why = producer.wait()
    return why, time.monotonic() - start


def test_a_job_names_its_folders_channel_and_the_store_publishes_each_chunk(rig: Rig) -> None:
    producer = starved(rig, window=2, files=3)
    channel = stored_channel(folder_id(rig.input))
    jobs = {a[0] for a in rig.chunk_args()}
    assert {rig.client.hget(job_key(j), "notify") for j in jobs} == {channel.encode()}
    listener = rig.client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel)
    assert rig.work() == [1, 1]
    heard, deadline = [], time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:  # a confirmation reads as None
        if (message := listener.get_message(timeout=1)) is not None:
            heard.append(message["data"])
    assert heard == [b"0", b"0"]  # each file's chunk 0
    listener.close()
    assert producer.wait() == "refill"


def test_a_full_window_refills_on_notes_without_waiting_a_tick(rig: Rig) -> None:
    producer = starved(rig, window=4, files=8)  # refills once two chunks (4 // 2) are stored
    assert rig.work(n=1) == [1]
    threading.Timer(0.05, lambda: rig.work(n=1)).start()
    why, seconds = timed(producer)
    assert why == "refill"
    assert 0.04 < seconds < TICK  # the second note ended it
    producer.step()
    assert len(rig.chunk_args()) == 4  # two waiting, and the refill
    # The poll took the notes and nothing was stored since; notes came lately, so a quiet tick
    # does not end the wait (a turn would find nothing new): it waits for the next second.
    why, seconds = timed(producer)
    assert why == "poll"
    assert POLL_SECONDS * 0.9 <= seconds < POLL_SECONDS * 1.5


def test_without_notes_lately_a_quiet_tick_ends_the_wait_again(rig: Rig) -> None:
    producer = starved(rig, window=4, files=8)
    assert rig.work(n=1) == [1]
    assert producer.doorbell.listen(5.0) and producer.doorbell.rung == 1
    producer.step()  # the poll takes the note
    producer.doorbell.heard -= NOTES_TRUSTED_SECONDS  # ... which came that long ago
    why, seconds = timed(producer)
    assert why == "tick"  # the workers may send none (an earlier version): a turn polls
    assert TICK * 0.9 <= seconds < POLL_SECONDS * 0.9


def test_without_notes_a_full_window_turns_every_tick(rig: Rig) -> None:
    producer = starved(rig, window=2, files=4)
    why, seconds = timed(producer)  # no worker: nothing is stored
    assert why == "tick"
    assert TICK * 0.9 <= seconds < POLL_SECONDS
    # A worker of an earlier version stores without a note: the turn after the tick polls.
    rig.client.hdel(job_key(rig.chunk_args()[0][0]), "notify")
    assert rig.work(n=1) == [1]
    assert producer.wait() == "tick"
    producer.step()
    assert len(rig.chunk_args()) == 2


def test_fewer_notes_than_a_refill_wait_for_the_poll(rig: Rig) -> None:
    producer = starved(rig, window=8, files=10)  # a refill is four chunks
    assert rig.work(n=1) == [1]
    producer._next_poll = time.monotonic() + 0.6
    why, seconds = timed(producer)
    assert why == "poll"
    assert 0.5 <= seconds < 1.5  # past the tick: the note said the workers are running


def test_a_wait_ends_soon_after_stop_is_asked(rig: Rig) -> None:
    producer = starved(rig, window=2, files=4)
    assert rig.work(n=1) == [1]  # one note: it would wait for the poll (a second away)
    producer._refill = 2  # one note is not enough
    timer = threading.Timer(0.3, lambda: setattr(producer, "stopping", True))
    timer.start()
    why, seconds = timed(producer)
    timer.join()
    assert why == "stop"
    assert seconds < 0.3 + 2 * TICK


def test_a_signal_ends_a_long_sleep_at_once(rig: Rig) -> None:
    """The command line's handler sets ``stopping``: a sleep of any length (a full window
    sleeps until enough notes should have come) ends then, not at the next tick."""
    producer = rig.producer(window=2)
    asked: list[float] = []

    def stop(_signum: int, _frame: object) -> None:
        asked.append(time.monotonic())
        producer.stopping = True

    previous = signal.signal(signal.SIGUSR1, stop)
    try:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))  # between ticks
        timer.start()
        began = time.monotonic()
        producer.sleep(10)
        ended = time.monotonic()
        timer.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert producer.stopping
    assert len(asked) == 1 and ended - began < 5
    assert ended - asked[0] < TICK / 4  # at once: a sleep that looked every tick ends at 0.4 s


def test_a_folder_hears_only_its_own_jobs(rig: Rig) -> None:
    producer = starved(rig, window=2, files=4)
    mine = {a[0] for a in rig.chunk_args()}
    other = make_rig(rig.root / "other", rig.url)
    try:
        neighbour = other.producer(window=2)
        no_poll_due(neighbour)
        other.write(comments(2), "x.json")
        neighbour.ready.push(other.input / "x.json", ANNOUNCED)
        neighbour.step()
        assert neighbour.doorbell.channel != producer.doorbell.channel
        assert neighbour.doorbell.listen(0.0)
        # The neighbour's chunk is stored (the rigs share the queue: take only its job's).
        theirs = [a for a in other.pop() if a[0] not in mine]
        assert [other.complete(a) for a in theirs] == [1]
        assert producer.wait() == "tick"
        assert producer.doorbell.rung == 0
        assert neighbour.doorbell.listen(1.0)
        assert neighbour.doorbell.rung == 1  # its own note reached it
    finally:
        other.close()


def test_redis_gone_while_listening_never_raises_and_the_listener_comes_back(
    rig: Rig, redis_server: RedisServer
) -> None:
    producer = starved(rig, window=4, files=8)
    assert producer.doorbell.listen(0.0)  # subscribed
    redis_server.stop()
    try:
        why, seconds = timed(producer)
        assert why == "tick"  # no notes to wait for: a tick, as before there were notes
        assert seconds < 10
        assert producer.doorbell._pubsub is None  # dropped, made again next time
    finally:
        redis_server.start()
    assert not producer.doorbell.listen(0.0)  # not made again at once ...
    time.sleep(LISTEN_RETRY_SECONDS)
    assert producer.doorbell.listen(0.0)  # ... but a second later: subscribed again
    assert rig.work(n=2) == [1, 1]
    assert producer.wait() == "refill"


def test_the_doorbell_counts_every_note_and_starts_again_at_take(rig: Rig) -> None:
    bell = Doorbell(rig.client, "emotions:stored:test")
    try:
        assert bell.listen(0.0)
        for i in range(5):
            rig.client.publish(bell.channel, str(i))
        assert bell.listen(1.0)
        deadline = time.monotonic() + 2
        while bell.rung < 5 and time.monotonic() < deadline:
            bell.listen(0.1)
        assert bell.rung == 5
        assert bell.take() == 5
        assert bell.rung == 0
        assert bell.listen(0.05)  # nothing: the whole wait, then True
        assert bell.rung == 0
    finally:
        bell.close()


def test_notes_due_at_the_faster_of_the_counted_and_the_smoothed_rate(rig: Rig) -> None:
    bell = Doorbell(rig.client, "emotions:stored:test")
    assert bell.due_in(4) == float("inf")  # no note yet: nothing to go by
    assert bell.rate == 0.0
    bell.rung, bell.since = 10, time.monotonic() - 1.0  # ten notes in a second
    assert bell.take() == 10
    assert 9.5 < bell.rate <= 10.0
    bell.rung, bell.since = 1, time.monotonic() - 1.0  # one note in a second so far ...
    assert 0.25 < bell.due_in(4) < 0.31  # ... but ten a second lately: a burst is late
    bell.since = time.monotonic() - 0.01  # one note in 10 ms: faster than lately
    assert bell.due_in(4) < 0.04  # three more at a hundred a second
    bell.rung = 5
    assert bell.due_in(4) == 0.0
    # Each count weighs as long as it took: one note over a few milliseconds (two polls in
    # a row) does not make the rate jump to hundreds a second ...
    bell.rung, bell.since = 1, time.monotonic() - 0.005
    bell.take()
    assert 10.0 < bell.rate < 13.0  # (10 / 2 + 1) notes over (1 / 2 + 0.005) s
    # ... and a quiet second lowers it.
    bell.since = time.monotonic() - 1.0
    assert bell.take() == 0
    assert 2.0 < bell.rate < 3.0  # (6 / 2) notes over (0.505 / 2 + 1) s


def rate_of(producer: Producer, per_second: float) -> None:
    """The doorbell heard ``per_second`` notes a second lately (its smoothed rate), and the
    count it is taking now started ten seconds ago (so that count says the same or slower)."""
    producer.doorbell.rung, producer.doorbell.since = round(per_second * 10), time.monotonic() - 10
    producer.doorbell.take()
    producer.doorbell.since = time.monotonic() - 10


def test_a_late_burst_of_notes_is_read_within_a_tick(rig: Rig) -> None:
    """Notes late at first (the workers served other folders) and then quick: the wait does
    not sleep as long as the slow rate says, so the window does not sit empty."""
    producer = starved(rig, window=8, files=10)  # a refill is four chunks
    rate_of(producer, 0.5)  # slow lately: three more notes would be six seconds away
    assert rig.work(n=1) == [1]
    threading.Timer(0.05, lambda: rig.work(n=3)).start()  # ... but they come at once
    producer._next_poll = time.monotonic() + POLL_SECONDS
    why, seconds = timed(producer)
    assert why == "refill"
    assert seconds < TICK + 0.15  # read after a tick's sleep, not at the poll


def test_a_wait_sleeping_on_notes_ends_when_the_poll_is_due(rig: Rig) -> None:
    producer = starved(rig, window=8, files=10)
    rate_of(producer, 0.5)
    assert rig.work(n=1) == [1]
    producer._next_poll = time.monotonic() + 0.25  # between the first tick and the second
    why, seconds = timed(producer)
    assert why == "poll"
    assert 0.2 <= seconds < 0.35  # a sleep cut to the poll, not a second tick


def test_fast_notes_wake_the_wait_at_most_every_gather_interval(rig: Rig) -> None:
    producer = starved(rig, window=8, files=10)
    rate_of(producer, 1e6)  # so fast that the rest should have come at once
    assert rig.work(n=1) == [1]
    sleeps: list[float] = []
    real = producer.sleep

    def counted(seconds: float) -> None:
        sleeps.append(seconds)
        real(seconds)

    producer.sleep = counted  # type: ignore[method-assign]
    producer._next_poll = time.monotonic() + 0.5
    why, _ = timed(producer)  # no more notes come: it waits for the poll
    assert why == "poll"
    assert len(sleeps) <= 0.5 / GATHER_SECONDS + 3  # a wake-up each 20 ms, not a busy loop
    assert all(s >= GATHER_SECONDS or s == sleeps[-1] for s in sleeps)


@pytest.mark.parametrize("window", [1, 3])
def test_a_small_window_refills_after_one_chunk(rig: Rig, window: int) -> None:
    producer = starved(rig, window=window, files=window + 1)
    assert producer._refill == 1
    assert rig.work(n=1) == [1]
    assert producer.wait() == "refill"


def test_while_a_big_file_is_checked_notes_refill_the_window(rig: Rig) -> None:
    """The check calls back after each chunk: with the poll an hour away, only the notes can
    make it feed (and it reads them at most every LISTEN_BETWEEN_SECONDS)."""
    producer = starved(rig, window=2, files=4)
    producer._between()
    assert len(rig.chunk_args()) == 2  # nothing stored: nothing to send
    assert rig.work() == [1, 1]
    time.sleep(LISTEN_BETWEEN_SECONDS)
    producer._between()
    assert sorted(a[4] for a in rig.chunk_args()) == ["v2.json", "v3.json"]
    assert producer.doorbell.rung == 0  # the poll took the notes


def test_a_chunk_stored_again_sends_no_second_note(rig: Rig) -> None:
    """A redelivered or healed chunk whose labels are already stored is no progress."""
    producer = starved(rig, window=4, files=5)
    args = rig.pop(1)[0]
    assert rig.complete(args) == 1  # a one-chunk file: stored, and its assembly is due
    job, index = args[0], args[1]
    assert rig.store.store_part(job, index, [0, 0], ["admiration", "joy", "neutral"]) == 0
    assert producer.doorbell.listen(1.0)
    time.sleep(0.2)
    producer.doorbell.listen(0.0)
    assert producer.doorbell.rung == 1


def test_notes_are_read_at_every_poll_so_none_piles_up_in_redis(rig: Rig) -> None:
    producer = rig.producer(window=8)
    queue_files(rig, producer, 3)
    producer.step()  # polls (due at once), sends all three: the window is not full
    assert not producer.tracker.starved()
    assert rig.work() == [1, 1, 1]
    time.sleep(0.2)
    producer._next_poll = 0.0
    producer.step()  # the poll reads the notes, and settles nothing yet (no assembly)
    pubsub = producer.doorbell._pubsub
    assert pubsub is not None
    assert pubsub.get_message(timeout=0.0) is None  # nothing left unread
    assert producer.doorbell.rung == 0


def test_a_user_without_the_channel_stores_and_the_producer_polls(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that lacks the channel makes PUBLISH fail: the store must still count (a script
    does not undo its writes, so a failing publish would fail the chunk forever), and the
    producer says once that it polls instead."""
    rig.client.execute_command(
        "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all", "resetchannels"
    )
    limited = redis.Redis.from_url(rig.url, username="nochan", password="pw")
    store = JobStore(limited, 3600)
    producer = starved(rig, window=2, files=3)
    job, index, texts, _model, _name = rig.pop(1)[0]
    assert store.begin(job, index, 5, {"error": "x"}) == 1
    assert store.store_part(job, index, [0] * len(texts), ["admiration", "joy", "neutral"]) == 1
    assert rig.client.hlen(parts_key(job)) == 1
    bell = Doorbell(limited, producer.doorbell.channel)
    with caplog.at_level(logging.WARNING, logger="producer.doorbell"):
        assert not bell.listen(1.0)  # the refusal comes as the subscription's reply
        assert not bell.listen(0.0)  # not tried again at once
    assert len([r for r in caplog.records if "cannot listen" in r.getMessage()]) == 1
    limited.close()
