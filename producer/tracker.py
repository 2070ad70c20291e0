"""Follows submitted jobs to their end: feeds them, heals them, settles them.

Supervision is what makes every file end. Each poll reads every followed job's state and how
many chunks are stored. A job that has chunks outstanding (or waits for its assembly) and made
no progress for ``EMOTIONS_STALL_SECONDS`` is healed: its missing chunks (or its assembly) are
sent again, which is harmless because storing is idempotent by chunk index. That recovers
messages Redis lost (a crash between fsyncs, an operator's mistake), an assembly that gave up,
a chunk whose worker vanished. After ``MAX_HEALS`` heals without progress the file fails with a
report naming the missing chunks. Work still waiting in a queue is not a stall: with no worker
running, files wait (and the producer says so), they do not fail.

Decisions are made by job id: an older job that ends after its file was rewritten or renamed
never marks the new content done, and never moves the file aside. A job superseded (its file
changed while it was processed) or lost from Redis hands its file back to the candidates
(``retake``), so the completion rules apply to the new content as to any other: a downloader
re-run onto the same name is waited for, not taken half-written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import orjson

from emotions.constants import (
    DONE,
    FAILED,
    INFERENCE_QUEUE,
    MAX_HEALS,
    QUEUED,
    RESULTS_QUEUE,
    SUPERSEDED,
    TOUCH_SECONDS,
)
from emotions.errors import InputError
from emotions.files import display_name
from emotions.jobs import JobStore, decode_meta
from emotions.settings import Settings
from producer.failed import FailedFolder
from producer.feeder import Feeder, Follow
from producer.ledger import Entry, Ledger, decode_entry
from producer.submit import Submitted

log = logging.getLogger(__name__)


class Tracker:
    """The jobs this producer follows, keyed by job id, oldest first."""

    def __init__(
        self,
        settings: Settings,
        feeder: Feeder,
        store: JobStore,
        ledger: Ledger,
        failed: FailedFolder,
        waiting: Callable[[str, str], int],
        retake: Callable[[Path], None],
    ) -> None:
        self.settings = settings
        self.feeder = feeder
        self.store = store
        self.ledger = ledger
        self.failed = failed
        self.waiting = waiting
        self.retake = retake
        self.jobs: dict[str, Follow] = {}
        self._by_path: dict[Path, Follow] = {}  # the newest job of each input path
        self.finished = 0

    def close(self) -> None:
        """Close every file still open for feeding (the producer is stopping)."""
        for f in self.jobs.values():
            f.close()

    def add(self, submitted: Submitted | None) -> None:
        if submitted is None:
            return
        replaced = self._by_path.get(submitted.path)
        if replaced is not None and replaced.sub.job != submitted.job:
            # The submitter superseded it: nothing of it will be written, stop following it.
            self.jobs.pop(replaced.sub.job, None)
            replaced.close()
        layout = submitted.layout
        if (renamed := self.jobs.get(submitted.job)) is not None:
            # The same job (same content) under a new name: its spool goes on, its path goes.
            layout, renamed.layout = layout or renamed.layout, None
            renamed.close()
            if self._by_path.get(renamed.sub.path) is renamed:
                del self._by_path[renamed.sub.path]
        now = time.monotonic()
        # A job just created has fresh TTLs (a resumed one's may be old: touched at its first
        # poll): touching every new job at once would cost each small file a round trip.
        touched = now if submitted.layout is not None else 0.0
        f = Follow(submitted, submitted.sent, last_change=now, touched=touched, layout=layout)
        self.jobs[submitted.job] = f
        self._by_path[submitted.path] = f
        if submitted.chunks == 0:  # an empty file: nothing to label, write "[]" at once
            self.feeder.send_assembly(f)

    def tracking(self, path: Path) -> bool:
        """True while a job for exactly this file (same size and mtime) is followed."""
        f = self._by_path.get(path)
        return f is not None and on_disk(path) == (f.sub.size, f.sub.mtime)

    def chunks(self) -> tuple[int, int]:
        """(chunks done, chunks in all) over the followed jobs, for progress bars."""
        return sum(f.stored for f in self.jobs.values()), sum(
            f.sub.chunks for f in self.jobs.values()
        )

    def feed(self) -> None:
        """Send more chunks while the window has room."""
        self.feeder.feed(list(self.jobs.values()))

    def starved(self) -> bool:
        """True when chunks wait to be sent and the window looks full as of the last poll
        (a poll may show that some of it finished)."""
        return self.room() <= 0 and any(f.unsent for f in self.jobs.values())

    def room(self) -> int:
        """Chunks the window takes now, as of the last poll."""
        return self.feeder.room(list(self.jobs.values()))

    def poll(self) -> None:
        """Read the followed jobs in flight: settle those that ended, heal those that stall.

        Jobs not fed yet (a backlog of thousands of files) can only end by this producer's
        own hand, so they are not read, only kept alive (their TTL refreshed now and then).
        """
        now = time.monotonic()
        active = [(j, f) for j, f in self.jobs.items() if f.sent or f.ended or not f.sub.chunks]
        for job, f in self.jobs.items():
            if now - f.touched >= TOUCH_SECONDS:
                self.store.touch(job)
                f.touched = now
        if not active:
            return
        pipe = self.store.r.pipeline()
        for job, _ in active:
            self.store.queue_meta(pipe, job)
        replies = pipe.execute()
        states = zip(replies[::2], replies[1::2], strict=True)
        ended: list[tuple[Follow, str | None]] = []
        for (_, f), (raw, stored) in zip(active, states, strict=True):
            state = raw.decode() if raw else None
            if state != QUEUED:
                ended.append((f, state))
            elif int(stored) != f.stored:
                f.stored, f.last_change, f.heals = int(stored), now, 0
            elif now - f.last_change >= self.settings.stall_after:
                self._supervise(f, now)
        if ended:
            self._settle_all(ended)

    def _settle_all(self, ended: list[tuple[Follow, str | None]]) -> None:
        """Settle the jobs that ended: their ledger entries and records read in one round
        trip, and the finished ones marked done in one more (a poll may end hundreds of small
        files). No job is dropped before both succeeded: a Redis error (refused writes
        included) leaves every one followed, to be settled at the next poll."""
        pipe = self.store.r.pipeline()
        for f, state in ended:
            self.ledger.queue_get(pipe, f.sub.name)
            if state:
                self.store.queue_read_meta(pipe, f.sub.job)
        replies = iter(pipe.execute())
        read = [
            (f, state, decode_entry(next(replies)), decode_meta(next(replies)) if state else {})
            for f, state in ended
        ]
        done = self.store.r.pipeline()
        for f, state, entry, _ in read:
            if state == DONE and entry is not None and entry.job == f.sub.job:
                self.ledger.put(f.sub.name, replace(entry, state=DONE), done)
        done.execute()
        for f, state, entry, meta in read:
            del self.jobs[f.sub.job]
            f.close()
            if self._by_path.get(f.sub.path) is f:
                del self._by_path[f.sub.path]
            self._settle(f, state, entry, meta)

    def _supervise(self, f: Follow, now: float) -> None:
        """No progress for the stall time: wait (work queued), heal, or fail the file."""
        complete = f.stored >= f.sub.chunks
        if not complete and f.sent <= f.stored:
            return  # nothing outstanding: the window is busy with older files
        queue = RESULTS_QUEUE if complete else INFERENCE_QUEUE
        waiting = self.waiting(queue, f.sub.job)
        name = display_name(f.sub.name)
        f.last_change = now
        if waiting:
            log.warning(
                "file=%s no progress for %.0fs; %d of its task(s) wait in the %r queue: is a "
                "worker consuming it?",
                name,
                self.settings.stall_after,
                waiting,
                queue,
            )
            return
        missing = sorted(set(range(f.sent)) - self.store.stored(f.sub.job))
        if f.heals >= MAX_HEALS:
            what = "its assembly was" if complete else f"chunks {_ranges(missing)} were"
            stall = self.settings.stall_after
            error = (
                f"no progress for {f.heals + 1} periods of {stall:.0f}s (EMOTIONS_STALL_SECONDS) "
                f"although {what} sent again {f.heals} times; see the worker logs"
            )
            self.store.fail(f.sub.job, {"error": error, "missing_chunks": missing})
            return
        # A heal counts once its messages are out: while Redis refuses writes nothing is
        # sent, and an outage longer than a few stall periods must not fail a good file.
        try:
            if complete:
                self.store.release_assembly(f.sub.job)
                self.feeder.send_assembly(f)
            elif missing:
                self.feeder.resend(f, set(missing))
        except (InputError, OSError) as e:  # the file changed or vanished: take it again
            self.feeder.changed(f, e)
            return
        f.heals += 1
        what = "assembly" if complete else f"chunks {_ranges(missing)}"
        log.warning("file=%s heal=%d: %s sent again", name, f.heals, what)

    def resume_clocks(self) -> None:
        """Redis is back after an outage: no job made progress while it was away, and none
        could be healed, so every stall clock starts again now."""
        now = time.monotonic()
        for f in self.jobs.values():
            f.last_change = now

    def _settle(
        self, f: Follow, state: str | None, entry: Entry | None, meta: dict[str, str]
    ) -> None:
        """The job ended: act on it only if it still owns its file (decided by job id).
        ``entry`` and ``meta``: its ledger entry and job record, as just read (a finished
        job's entry is already marked done)."""
        sub = f.sub
        owner = entry is not None and entry.job == sub.job
        detail = orjson.loads(meta.get("detail", "{}"))
        if state == DONE:
            self.finished += 1
            seconds = max(float(meta.get("finished", time.time())) - sub.started, 1e-6)
            log.info(
                "file=%s event=finished records=%d seconds=%.2f rate=%.1f/s output=%s",
                display_name(sub.name),
                sub.records,
                seconds,
                sub.records / seconds,
                detail.get("output"),
            )
        elif state == FAILED and owner and self._unchanged(sub):
            self.failed.fail(sub.path, detail.pop("error", "unknown error"), job=sub.job, **detail)
        elif state == FAILED and owner:  # rewritten since: the report is of older content
            log.warning(
                "file=%s job=%s failed (%s), but the file has changed since: taking it again",
                display_name(sub.name),
                sub.job,
                detail.get("error"),
            )
            self.retake(sub.path)
        elif state == SUPERSEDED and owner:
            log.info(
                "file=%s job=%s superseded (%s); taking the file again once complete",
                display_name(sub.name),
                sub.job,
                detail.get("error"),
            )
            self.retake(sub.path)
        elif state is None:
            log.warning(
                "file=%s job=%s vanished from Redis; submitting again once complete",
                display_name(sub.name),
                sub.job,
            )
            if owner:
                self.ledger.update(sub.name, state=SUPERSEDED)
            self.retake(sub.path)

    @staticmethod
    def _unchanged(sub: Submitted) -> bool:
        """Whether the file is still the one the job was made of (size and mtime as taken):
        a failure moves only that content to the failed folder, never newer content."""
        now = on_disk(sub.path)
        return now is None or now == (sub.size, sub.mtime)  # gone: the report stands alone


def on_disk(path: Path) -> tuple[int, float] | None:
    """(size, mtime) of the file as the submitter recorded them, None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime


def _ranges(indexes: list[int]) -> str:
    """``0-3, 7, 9-10`` for a report (a file may miss thousands of chunks)."""
    out: list[str] = []
    for i in indexes:
        if out and int(out[-1].split("-")[-1]) == i - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ", ".join(out) or "none"
