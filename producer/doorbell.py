"""The workers' notes that chunks were stored: what wakes a producer whose window is full.

Without them, a producer whose window is full learns which chunks finished only by polling,
once per turn of its loop (0.2 s): it then sends at most a window per turn (64 chunks per
0.2 s is about 160,000 comments/s, some six big GPUs, whatever its CPU allows), and each turn
spent waiting costs CPU although nothing can be sent.

So each job's record names its folder's channel (``notify``), and the worker's store script
publishes a chunk's index there once its labels are stored (:mod:`emotions.jobs`). The
producer listens on that channel: a full window waits on the socket, and refills as soon as
enough of it finished (:data:`~emotions.constants.REFILL_SHARE`).

A note is a hint, never the truth. Pub/sub keeps nothing for a listener that is not connected,
and a worker of an earlier version sends none, so notes can be missed; the producer's poll
still reads every job's progress, and a wait without notes ends as early as a turn did
before. Nothing here raises: a listener that fails is dropped and made again later
(:data:`~emotions.constants.LISTEN_RETRY_SECONDS` when Redis was unavailable, and the loop's
next turn says so as it always did; :data:`~emotions.constants.LISTEN_BROKEN_SECONDS`, said
once, after an error that will not pass by itself, such as an ACL without the channel).

Notes are read at every poll too, so they never pile up in Redis (a subscriber's unread
messages are held in its output buffer, in Redis's memory) while the window is not full.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from emotions.constants import (
    LISTEN_BROKEN_SECONDS,
    LISTEN_RETRY_SECONDS,
    NOTES_TRUSTED_SECONDS,
)
from emotions.redisfaults import unavailable

log = logging.getLogger(__name__)


class Doorbell:
    """Counts the notes published on one channel since the count was last taken."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self.client = client
        self.channel = channel
        self.rung = 0  # notes counted since the last take()
        self.since = time.monotonic()  # when the count started
        self.heard = float("-inf")  # when the last note was counted
        self._notes = 0.0  # notes counted over the takes, halved at each (see rate)
        self._seconds = 0.0  # ... and the seconds they were counted over
        self._pubsub: Any = None
        self._retry_at = 0.0  # monotonic time before which no listener is made again

    def take(self) -> int:
        """The notes counted so far (those already read off the socket), counting from zero
        again: a poll is about to read what they announced. The count and the time it took
        go into :attr:`rate`."""
        now = time.monotonic()
        rung, self.rung = self.rung, 0
        self._notes = self._notes / 2 + rung
        self._seconds = self._seconds / 2 + max(0.0, now - self.since)
        self.since = now
        return rung

    @property
    def rate(self) -> float:
        """Notes per second over the last few takes, the older ones halved at each: each count
        weighs as long as it took, so one note over a few milliseconds (two polls in a row)
        does not read as hundreds a second, and a quiet spell lowers the rate (0 before any
        take)."""
        return self._notes / self._seconds if self._seconds > 0 else 0.0

    def trusted(self) -> bool:
        """Whether notes come: one was counted within
        :data:`~emotions.constants.NOTES_TRUSTED_SECONDS`."""
        return time.monotonic() - self.heard < NOTES_TRUSTED_SECONDS

    def due_in(self, want: int) -> float:
        """Seconds until ``want`` notes are counted (infinite before the first note), at the
        faster of two rates: that of the notes counted so far, and :attr:`rate`. Notes come in
        bursts (a worker stores a few chunks, then fetches more), so the first few say little
        about the rate; the smoothed one says more, but lags when the workers speed up. The
        faster one wakes the wait early rather than late: waking early costs a wake-up,
        waking late lets the window drain."""
        if self.rung <= 0:
            return float("inf")
        rate = max(self.rung / max(time.monotonic() - self.since, 1e-3), self.rate)
        return max(0.0, (want - self.rung) / rate)

    def listen(self, timeout: float) -> bool:
        """Count the notes that arrive within ``timeout`` seconds (0: those already here),
        returning at the first one; False when Redis could not be listened to (the listener
        is dropped and made again later)."""
        if self._pubsub is None and time.monotonic() < self._retry_at:
            return False
        try:
            pubsub = self._listener()
            deadline = time.monotonic() + timeout
            while True:
                left = max(0.0, deadline - time.monotonic())
                message = pubsub.get_message(timeout=left)
                if message is None:  # nothing within the time left (or a health check's reply,
                    return True  # which redis-py reads as None: the wait ends early, harmless)
                if self._count(message):
                    self._drain(pubsub)
                    return True
                # A subscription's confirmation or a health check's reply: read on.
        except Exception as e:
            self.close()
            if unavailable(e):
                self._retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
            else:
                self._retry_at = time.monotonic() + LISTEN_BROKEN_SECONDS
                log.warning(
                    "cannot listen on %s for stored chunks (%r): polling instead, trying "
                    "again in %.0f s",
                    self.channel,
                    e,
                    LISTEN_BROKEN_SECONDS,
                )
            return False

    def _drain(self, pubsub: Any) -> None:
        """Count every note already read or waiting on the socket, without waiting."""
        while (message := pubsub.get_message(timeout=0.0)) is not None:
            self._count(message)

    def _count(self, message: dict[str, Any]) -> bool:
        """Count ``message`` if it is a note (not a subscription's confirmation)."""
        if message["type"] != "message":
            return False
        self.rung += 1
        self.heard = time.monotonic()
        return True

    def _listener(self) -> Any:
        if self._pubsub is None:
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
            except BaseException:
                pubsub.close()
                raise
            self._pubsub = pubsub
        return self._pubsub

    def close(self) -> None:
        """Drop the listener (its connection goes back to the client's pool, closed)."""
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception as e:  # a connection already broken
                log.debug("closing the listener: %r", e)
