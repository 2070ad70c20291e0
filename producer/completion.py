"""When a file in the input folder counts as complete, whatever noticed it.

youtube-comment-downloader writes straight to its final name, page by page, with network
pauses that can last minutes, so "unchanged for a second" is not "complete". Every rule below
counts from the last time the file's size or mtime changed:

- **settle**: a file closed after writing, moved or renamed into the folder, or seen without
  events at all (present at start, polled mounts, rescans) is complete once unchanged for
  ``EMOTIONS_SETTLE_SECONDS``;
- **open file**: a file written to since its last close-after-write (inotify tells) is still
  being written however long it stays still, up to ``EMOTIONS_OPEN_FILE_SECONDS``, so that a
  writer hung without closing still ends;
- **incomplete**: a file whose data stopped inside a record when it was read
  (``IncompleteInputError``) is read again only once unchanged for
  ``EMOTIONS_INCOMPLETE_SECONDS`` (the open-file time if it is still open for writing);
  still cut short and unchanged then, it fails.

A change to the file ends whichever wait it was in: new data is judged afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emotions.settings import Settings

Stat = tuple[int, float]  # (size, mtime): what "unchanged" compares
UNSEEN: Stat = (-1, -1.0)  # before the first look: any real file differs


@dataclass(frozen=True, slots=True)
class Limits:
    """The three waits, in seconds."""

    settle: float
    open_file: float
    incomplete: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.settle_seconds, settings.open_file_seconds, settings.incomplete_seconds)


@dataclass(slots=True)
class Pending:
    """One candidate file: what was last seen of it, since when, and which wait applies."""

    seen: Stat = UNSEEN
    since: float = 0.0
    writing: bool = False  # written to since its last close-after-write (inotify only)
    truncated: str = ""  # why its last read stopped inside a record; "" when not deferred
    announced: bool = False  # an event named it (it goes before files found by rescans)

    def look(self, current: Stat, now: float) -> bool:
        """Record the file's size and mtime; True (and the clock restarts) when they changed.

        A change also ends a deferral for truncation: the new data gets the usual rules.
        """
        if current == self.seen:
            return False
        self.seen, self.since, self.truncated = current, now, ""
        return True

    def wait(self, limits: Limits) -> float:
        """How long the file must stay unchanged before it is taken.

        A file still open for writing waits for its close even when it read as cut short: a
        writer in a long pause must not see its file failed.
        """
        if self.writing:
            return limits.open_file
        return limits.incomplete if self.truncated else limits.settle

    def ready(self, now: float, limits: Limits) -> bool:
        return now - self.since >= self.wait(limits)


class Incomplete(Exception):
    """A file read as cut short (its data stops inside a record): defer it, do not fail it.

    Raised by the submitter once the job begun for it has been withdrawn; the producer hands
    the path back to its candidates (:meth:`producer.watcher.Candidates.defer`).
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def truncated_report(reason: str, waited: float) -> str:
    """The failure report of a file that stayed cut short: what is wrong and what to do."""
    return (
        f"{reason} -- still so after {waited:g} s without any change, so its last record is "
        "truncated: the program writing it stopped before finishing. Complete or remove the "
        "last record and put the file back (if your downloader pauses longer than that, "
        "raise EMOTIONS_INCOMPLETE_SECONDS)"
    )
