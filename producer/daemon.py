"""The producer's loop: take complete files, submit them, feed and follow their jobs.

``Producer`` wires settings, Redis, the ledger, the submitter, the feeder, the tracker, the
failed folder and the folder's candidates together, and runs one turn of the loop at a time
(:meth:`Producer.step`); :mod:`producer.runs` drives it as a daemon or for ``--once``.
Both take a file only when :mod:`producer.completion` says it is complete, and hand a file
that reads as cut short back to the candidates instead of failing it. Complete files wait in
a :class:`~producer.queue.ReadyQueue` (each once, new files before rescanned ones) and are
taken only while few taken files still have chunks to send, so a backlog waits in the
producer's memory (a few hundred bytes a file), not as jobs in Redis ahead of a new file.
Checking a big file runs the feed between its chunks, so the window never drains meanwhile.

A producer holds its input folder's lock (:mod:`producer.folder`) from start to exit: a
second producer on the same folder is refused at start.

The loop never dies on a file: a problem with one file becomes a report in the failed folder,
an unexpected error is logged with the file's name and the loop goes on, and Redis being down
is said at once and then every few seconds while the loop keeps trying. Every wait is short,
so a signal stops the producer within seconds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from emotions.constants import (
    FEED_AHEAD_FILES,
    GATHER_SECONDS,
    QUEUED,
    REFILL_SHARE,
    stored_channel,
)
from emotions.files import display_name
from emotions.jobs import JobStore, connect
from emotions.messages import waiting_for
from emotions.redisfaults import UNAVAILABLE, unavailable
from emotions.settings import Settings
from producer.completion import Incomplete, truncated_report
from producer.doorbell import Doorbell
from producer.failed import FailedFolder
from producer.feeder import Feeder
from producer.folder import FolderLock, adopt_legacy
from producer.ledger import Ledger
from producer.queue import ANNOUNCED, RESUMED, SCANNED, ReadyQueue
from producer.spool import SpoolError
from producer.stopflag import StopFlag
from producer.submit import Submitter
from producer.tracker import Tracker
from producer.watcher import Candidates

log = logging.getLogger("producer")
TICK = 0.2  # seconds between checks of settled files and job states
POLL_SECONDS = 1.0  # seconds between reads of the followed jobs' progress
DOWN_WARN_SECONDS = 5.0  # while Redis is down, say so this often
# Taking a file reads it whole once; with a large backlog, feeding the workers must not wait
# until every file has been read, so each turn of the loop takes files for at most this long.
TAKE_SECONDS = 1.0
# While a big file is checked, the workers' notes are read at most this often (reading costs a
# system call; the check calls back after every chunk).
LISTEN_BETWEEN_SECONDS = 0.05
# Redis restarting or refusing writes (emotions.redisfaults): from our own client, or from
# kombu when publishing a chunk.
BROKER_DOWN = UNAVAILABLE


class Producer:
    """Wires settings, Redis, the ledger, the submitter, feeder and tracker together."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        client = connect(settings.backend_url, patient=False)
        broker = (
            client
            if settings.broker_url == settings.backend_url
            else connect(settings.broker_url, patient=False)
        )
        self.store = JobStore(client, settings.result_ttl)
        self.ledger = Ledger(client, settings.input_dir, settings.output_dir)
        self.lock = FolderLock(client, settings.input_dir)
        self.doorbell = Doorbell(client, stored_channel(self.ledger.folder))
        self.failed = FailedFolder(settings, self.ledger)
        self.submitter = Submitter(settings, self.store, self.ledger, self.failed)
        feeder = Feeder(settings, app, self.store)
        self.candidates = Candidates(
            settings.input_dir,
            settings.settle_seconds,
            settings.open_file_seconds,
            settings.incomplete_seconds,
        )
        self.tracker = Tracker(
            settings,
            feeder,
            self.store,
            self.ledger,
            self.failed,
            lambda queue, job: waiting_for(broker, queue, job),
            self.candidates.nominate,
        )
        self.ready = ReadyQueue(self.candidates.folder)
        self.candidates.skip = lambda path: path in self.ready or self.tracker.tracking(path)
        self.submitter.between = self._between
        self._resumed: dict[str, float] = {}  # names in flight at start -> first-seen time
        self._between_busy = False
        self.lost_lock = False
        self._stop = StopFlag()
        self._down_since: float | None = None
        self._down_warned = 0.0
        self._spool_warned = -DOWN_WARN_SECONDS
        self._next_poll = 0.0
        self._next_listen = 0.0
        self._refill = max(1, settings.window // REFILL_SHARE)

    def start(self) -> None:
        """Take the folder's lock (waiting while Redis is down), adopt an earlier version's
        ledger once, and read the order of the files in flight. Raises
        :class:`~emotions.errors.FolderLockedError` when another producer has the folder."""
        while not self.stopping:
            try:
                self.lock.acquire()
                adopt_legacy(self.store.r, self.ledger)
                self._resumed = {
                    name: entry.first_seen
                    for name, entry in self.ledger.all().items()
                    if entry.state == QUEUED
                }
                self._up()
                return
            except BROKER_DOWN as e:
                self._down(e)

    def stop(self) -> None:
        """Close the files being fed; let the next producer of this folder start at once."""
        self.tracker.close()
        self.doorbell.close()
        try:
            self.lock.release()
        except BROKER_DOWN as e:  # it expires by itself
            log.warning("folder lock not released (%s); it expires by itself", e)

    def queue(self, settled: list[tuple[Path, bool]]) -> None:
        """Queue complete files: those in flight at start first (by first-seen time), then
        those announced by events, then those found by rescans."""
        now = time.monotonic()
        for path, announced in settled:
            if (first := self._resumed.pop(display_name(path.name), None)) is not None:
                self.ready.push(path, RESUMED, first)
            else:
                self.ready.push(path, ANNOUNCED if announced else SCANNED, now)

    def take(self, paths: list[Path] | None = None) -> None:
        """Submit queued files that need work, while few taken files wait to be fed (Redis
        errors propagate, the file in hand is put back first in line).

        A problem with one file never stops the others: an unexpected error fails that file
        with a report (the failed folder's ledger entry keeps it from being taken again until
        it changes), and the loop goes on.
        """
        for given in paths or []:
            self.ready.push(given, ANNOUNCED)
        deadline = time.monotonic() + TAKE_SECONDS
        while not self.stopping and time.monotonic() <= deadline:
            if sum(f.unsent for f in self.tracker.jobs.values()) >= FEED_AHEAD_FILES:
                return  # the rest wait here, not as jobs in Redis: jobs in flight are fed
            path = self.ready.pop()
            if path is None:
                return
            try:
                if not self.tracker.tracking(path):  # in flight and unchanged: nothing to do
                    self.tracker.add(self.submitter.consider(path))
            except Incomplete as e:
                self._incomplete(e)
            except Exception as e:
                if unavailable(e) or isinstance(e, SpoolError):  # never the file's fault
                    self.ready.again(path)
                    raise
                log.exception("file=%s unexpected error: %r", display_name(path.name), e)
                self._fail_unexpected(path, e)

    def _between(self) -> None:
        """Called while a big file is checked: keep the folder's lock, poll and feed when due
        or when the workers' notes say a share of the window finished, so the window does not
        drain during the check (not re-entered)."""
        if self._between_busy:
            return
        now = time.monotonic()
        if now < self._next_poll and not self._rung_between(now):
            return
        self._between_busy = True
        try:
            if not self.lock.refresh():  # a check may outlast the lock's TTL
                self.stopping = self.lost_lock = True
            self._poll()
            self.tracker.feed()
            self._next_poll = time.monotonic() + POLL_SECONDS
        except Exception as e:  # not the checked file's fault: the loop's next turn retries
            if unavailable(e) or isinstance(e, SpoolError):
                raise  # the file being checked is put back; the loop says what is down
            log.exception("unexpected error feeding during a check (it goes on): %r", e)
        finally:
            self._between_busy = False

    def _rung_between(self, now: float) -> bool:
        """Whether enough notes came to refill, read from the socket at most every
        :data:`LISTEN_BETWEEN_SECONDS`."""
        if now < self._next_listen or self._down_since is not None:
            return False
        self._next_listen = now + LISTEN_BETWEEN_SECONDS
        self.doorbell.listen(0.0)
        return self.doorbell.rung >= self._refill

    def _poll(self) -> None:
        """Read the followed jobs' progress; the notes that came so far (read now, so none
        piles up in Redis) announced part of it."""
        self.doorbell.listen(0.0)
        self.doorbell.take()
        self.tracker.poll()

    def _fail_unexpected(self, path: Path, error: Exception) -> None:
        try:
            self.failed.fail(path, f"unexpected error while reading the file: {error!r}")
        except Exception as e:  # Redis or the disk: logged, the loop goes on
            log.error("file=%s cannot be failed either: %r", display_name(path.name), e)

    def step(self, only: set[Path] | None = None) -> None:
        """One turn of the loop: keep the lock, queue complete files (``only`` those, if
        given), take some, poll and heal jobs (each second, or sooner while the window looks
        full), then feed.

        Feeding every turn, not only after a poll, is what lets small files flow: a turn
        takes up to :data:`~emotions.constants.FEED_AHEAD_FILES` files and sends them at
        once, so the next turn can take more; polling sooner while the window looks full
        frees the room of the chunks finished meanwhile.
        """
        try:
            settled = self.candidates.settle()
            self.queue([(path, ev) for path, ev in settled if only is None or path in only])
            if not self.lock.refresh():
                log.error("another producer took %s: stopping", self.settings.input_dir)
                self.stopping = self.lost_lock = True
                return
            self.take()
            if time.monotonic() >= self._next_poll:
                self.store.r.ping()  # says "Redis is down" even with nothing in flight
                self._poll()
                self._next_poll = time.monotonic() + POLL_SECONDS
            elif self.tracker.starved():
                self._poll()  # the window looks full: learn which chunks finished
            self.tracker.feed()  # every turn: files just taken are sent now, not next second
            self._up()
        except Exception as e:
            if unavailable(e):  # Redis down or refusing writes
                self._down(e)
                return
            if isinstance(e, SpoolError):  # the spool's disk: files wait, none fails
                self._spool_down(e)
                return
            log.exception("unexpected error in the producer loop (it goes on): %r", e)
            self.sleep(1)

    def eager(self) -> bool:
        """Whether the loop should turn again at once: files wait to be taken and the window
        has room. A turn takes at most :data:`~emotions.constants.FEED_AHEAD_FILES` files
        before it feeds them; pausing a tick after every such turn capped a folder of small
        files at about that many files per tick, below what one worker drains."""
        if self.stopping or self._down_since is not None or not self.ready:
            return False
        return self.tracker.room() > 0

    def wait(self) -> str:
        """Wait before the next turn of the loop: a tick, or, while the window is full, until
        a :data:`~emotions.constants.REFILL_SHARE`-th of it (at least one chunk) finished.

        With the window full a turn can send nothing, so the workers' notes
        (:mod:`producer.doorbell`) end the wait, or the poll falling due (at most a second
        away). Once notes come, the wait sleeps until enough should have come at their rate
        (at least :data:`~emotions.constants.GATHER_SECONDS`), then reads them all: waking per
        note cost more CPU than the turns it saved. It sleeps at most a tick at a time: the
        first notes of a burst that came late say little about how fast the rest come, and a
        window must not sit empty while the producer sleeps. While notes come
        (:data:`~emotions.constants.NOTES_TRUSTED_SECONDS`), a quiet tick does not end the
        wait either: a turn costs about a millisecond of CPU, and a producer that keeps a
        fleet fed spends most of its time with its window full. Without notes lately (workers
        that send none, a listener lost with Redis), a wait that hears none within a tick ends
        then, as every wait did before there were notes, and the turn's poll finds what a
        note would have said. Room that no note announces (a job failed or superseded) is
        found by the poll, within a second. A stop ends a sleep at once and a wait within a
        tick. Returns why it ended: ``"refill"``, ``"poll"``, ``"tick"`` or ``"stop"``.
        """
        start = time.monotonic()
        if self._down_since is not None or not self.tracker.starved():
            self.sleep(TICK)
            return "stop" if self.stopping else "tick"
        quiet = start + TICK
        due = min(max(quiet, self._next_poll), start + POLL_SECONDS)
        while not self.stopping:
            now = time.monotonic()
            if self.doorbell.rung >= self._refill:
                return "refill"
            if now >= due:
                return "poll"
            if self.doorbell.rung:  # notes come: sleep until enough should have come
                pause = max(GATHER_SECONDS, self.doorbell.due_in(self._refill))
                self.sleep(min(pause, TICK, due - now))  # a late burst drains faster
                listened = self.doorbell.listen(0.0)
            elif now >= quiet and not self.doorbell.trusted():
                return "tick"
            else:  # the first note, a tick at a time (a stop is looked at between them)
                listened = self.doorbell.listen(min(TICK, due - now))
            if not listened:
                self.sleep(quiet - time.monotonic())  # no notes to wait for: a tick, as before
                return "stop" if self.stopping else "tick"
        return "stop"

    def _down(self, error: Exception) -> None:
        """Say that Redis is down: at once, then every few seconds."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        if now - self._down_warned >= DOWN_WARN_SECONDS:
            self._down_warned = now
            log.warning(
                "redis unavailable at %s for %.0fs (%s); retrying",
                maybe_sanitize_url(self.settings.broker_url),
                now - self._down_since,
                error,
            )
        self.sleep(1)

    def _spool_down(self, error: SpoolError) -> None:
        """Say that the spool cannot be written: at once, then every few seconds."""
        now = time.monotonic()
        if now - self._spool_warned >= DOWN_WARN_SECONDS:
            self._spool_warned = now
            log.warning("%s; files wait until it can (retrying)", error)
        self.sleep(1)

    def _up(self) -> None:
        if self._down_since is not None:
            self.tracker.resume_clocks()
            log.info("redis is back after %.0fs", time.monotonic() - self._down_since)
            self._down_since = None
            self._down_warned = 0.0

    @property
    def stopping(self) -> bool:
        """Whether the producer was asked to stop (by a signal, or by losing its folder)."""
        return bool(self._stop)

    @stopping.setter
    def stopping(self, value: bool) -> None:
        if not value:
            raise ValueError("a producer asked to stop is not started again")
        self._stop.set()  # ends a sleep at once; safe in a signal's handler

    def sleep(self, seconds: float) -> None:
        """Sleep, ending at once when the producer is asked to stop
        (:class:`~producer.stopflag.StopFlag`: no wake-ups to look at the flag)."""
        self._stop.sleep(seconds)

    def _incomplete(self, cut: Incomplete) -> None:
        """A file read as cut short: read it again later, or fail it if it stayed so."""
        name, wait = display_name(cut.path.name), self.settings.incomplete_seconds
        if self.candidates.defer(cut.path, cut.reason):
            log.warning(
                "file=%s event=incomplete %s; reading it again once unchanged for %g s",
                name,
                cut.reason,
                wait,
            )
            return
        self.failed.fail(cut.path, truncated_report(cut.reason, wait), truncated=True)
