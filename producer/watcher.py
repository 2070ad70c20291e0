"""Which files in the input folder are ready to take, from watchdog events and rescans.

watchdog reports a create when writing starts, a move inside the folder as a move, and no
event at all for files present at start; inotify can overflow and drop events, and network
or FUSE mounts (Drive, NFS, CIFS) give none. So events and periodic rescans both only nominate
candidates, and :mod:`producer.completion` decides when each is complete.

On Linux the observer is inotify with full move events, which tells what the rules need:
``FileModifiedEvent`` (IN_MODIFY: data written, or truncated) and ``FileCreatedEvent``
(IN_CREATE: a new file, open for writing) mean "being written"; ``FileClosedEvent``
(IN_CLOSE_WRITE: closed after writing, also when the writer dies) and ``FileMovedEvent`` (a
rename, or with ``dest_path`` only, a move in from outside) mean "written". ``FileOpenedEvent``
and ``FileClosedNoWriteEvent`` do not say whether the file was opened for writing (readers,
the producer itself among them, send them too) and are not used; ``FileAttribEvent`` (chmod,
touch) only nominates. Other observers send no closes, so their events only nominate.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from watchdog.events import (
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver
from watchdog.utils import UnsupportedLibcError, platform

from emotions.constants import DEFAULT_INCOMPLETE_SECONDS, DEFAULT_OPEN_FILE_SECONDS
from producer.completion import Limits, Pending, Stat

log = logging.getLogger(__name__)

IGNORED = (".*", "*.tmp", "*.part", "*.crdownload", "~*")


def ignored(name: str) -> bool:
    """Temporary and hidden files are left alone until they are renamed."""
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def takeable(path: Path) -> bool:
    """A file (or a symlink, which the submitter vets) with a name that is not ignored.

    Subfolders are never taken, nor failed: people keep archives in there.
    """
    if ignored(path.name):
        return False
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISLNK(mode)


def _stat(path: Path) -> Stat | None:
    """(size, mtime) of the name itself (a symlink is not followed), None when it is gone."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st.st_size, st.st_mtime


def _new_file(path: Path) -> bool:
    """A created name that a writer opened: a regular file with no other hard link.

    ``link()`` and ``symlink()`` also send IN_CREATE, but nobody is writing those.
    """
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


class Candidates(FileSystemEventHandler):
    """Files nominated by events or scans, waiting until :mod:`producer.completion` says go.

    ``closes_reported`` is set by :func:`start_observer` when the observer sends
    close-after-write events (inotify); only then do writes keep a file waiting for its close.
    ``skip`` tells rescans which files are already in hand (waiting to be taken, or followed
    unchanged): they are not nominated again, so a rescan of a big folder adds nothing twice.
    """

    def __init__(
        self,
        folder: Path,
        settle_seconds: float,
        open_file_seconds: float = DEFAULT_OPEN_FILE_SECONDS,
        incomplete_seconds: float = DEFAULT_INCOMPLETE_SECONDS,
    ) -> None:
        self.folder = folder.resolve()
        self.limits = Limits(settle_seconds, open_file_seconds, incomplete_seconds)
        self.closes_reported = False
        self.skip: Callable[[Path], bool] = lambda _path: False
        self._lock = threading.Lock()
        self._pending: dict[Path, Pending] = {}
        self._deferred: dict[Path, Stat] = {}  # read as cut short, as it was then

    def nominate(self, path: Path, writing: bool | None = None, announced: bool = True) -> None:
        """Add a file of the folder to the candidates (hidden and temporary names excepted).

        ``writing``: an event said the file is being written (True) or was closed after
        writing or moved in (False); None leaves what is known as it is. ``announced``: named
        by an event or by the producer itself (False: found by a rescan).
        """
        if not takeable(path):
            return
        with self._lock:
            entry = self._pending.setdefault(path, Pending(since=time.monotonic()))
            entry.announced = entry.announced or announced
            if writing is not None and self.closes_reported:
                entry.writing = writing

    def scan(self) -> None:
        """Nominate every file in the folder (start-up, lost events, polling mounts)."""
        try:
            for path in self.folder.iterdir():
                if path not in self._pending and not self.skip(path):
                    self.nominate(path, announced=False)
        except OSError as e:
            log.error("cannot list input folder %s: %s", self.folder, e)

    def pending(self) -> set[Path]:
        """The files still waiting (deferred ones included)."""
        with self._lock:
            return set(self._pending)

    def settled(self) -> list[Path]:
        """Candidates that are complete by the rules of :mod:`producer.completion`."""
        return sorted(path for path, _ in self.settle())

    def settle(self) -> list[tuple[Path, bool]]:
        """Complete candidates and whether an event announced each, announced ones first,
        then in the order they were nominated."""
        now, ready = time.monotonic(), []
        with self._lock:
            for path, entry in list(self._pending.items()):
                current = _stat(path)
                if current is None:
                    del self._pending[path]  # renamed or deleted: its new name gets an event
                    self._deferred.pop(path, None)
                    continue
                if entry.look(current, now):  # first look, or changed: the clock starts
                    if self._deferred.get(path, current) != current:
                        del self._deferred[path]  # new data since it read as cut short
                elif entry.ready(now, self.limits):
                    del self._pending[path]
                    ready.append((not entry.announced, entry.since, path))
                    if entry.writing:
                        log.warning(
                            "file=%s event=still-open written to but not closed, and unchanged "
                            "for %.0f s (EMOTIONS_OPEN_FILE_SECONDS): taking it as it is",
                            path.name,
                            now - entry.since,
                        )
        return [(path, not scanned) for scanned, _, path in sorted(ready)]

    def defer(self, path: Path, reason: str) -> bool:
        """Put back a file that read as cut short, to be read again once unchanged for the
        incomplete time; False when it already was, and has not changed since: give up."""
        current = _stat(path)
        if current is None:
            return True  # gone meanwhile: nothing to read again, nothing to fail
        with self._lock:
            if self._deferred.get(path) == current:
                del self._deferred[path]
                self._pending.pop(path, None)
                return False
            self._deferred[path] = current
            # Events during the read may have nominated it again: keep what they said.
            before = self._pending.get(path)
            writing = before.writing if before else False
            announced = before.announced if before else True
            self._pending[path] = Pending(current, time.monotonic(), writing, reason, announced)
        return True

    def on_created(self, event: FileSystemEvent) -> None:
        path = self._path(event.src_path)
        if path is not None:
            self.nominate(path, writing=_new_file(path))

    def on_modified(self, event: FileSystemEvent) -> None:
        self._event(event.src_path, writing=True)

    def on_closed(self, event: FileSystemEvent) -> None:
        self._event(event.src_path, writing=False)

    def on_attrib(self, event: FileSystemEvent) -> None:
        self._event(event.src_path)  # chmod, touch: nothing written

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.dest_path:  # empty: moved out of the folder
            self._event(event.dest_path, writing=False)

    def _event(self, raw: str | bytes, writing: bool | None = None) -> None:
        path = self._path(raw)
        if path is not None:
            self.nominate(path, writing)

    def _path(self, raw: str | bytes) -> Path | None:
        """The folder's own name for an event path; None outside the folder."""
        path = Path(os.fsdecode(raw))
        if not raw or path.parent.resolve() != self.folder:  # a move out lands elsewhere
            return None
        return self.folder / path.name


# The events the rules use. With inotify the filter is also the kernel's mask: the opens and
# reads of the folder's files (the producer's own check, the assembly's) wake nobody; each
# cost the watchdog thread about 0.05 ms of CPU, several per small file.
EVENTS: Final = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileAttribEvent,
]


def native_observer() -> tuple[BaseObserver, bool]:
    """The platform's observer, and whether it reports close-after-write.

    On Linux: inotify with full move events, so that a file moved in from outside arrives as a
    move (complete), not as a create (which would mean "a writer just opened it").
    """
    if platform.is_linux():
        with contextlib.suppress(UnsupportedLibcError):  # as watchdog's own choice of Observer
            from watchdog.observers.inotify import InotifyObserver

            return InotifyObserver(generate_full_events=True), True
    return Observer(), False


def start_observer(candidates: Candidates, poll: bool, poll_seconds: float = 2.0) -> BaseObserver:
    """Start watchdog on the folder: inotify (or the platform's native API), or polling."""
    observer: BaseObserver
    if poll:
        observer, candidates.closes_reported = PollingObserver(timeout=poll_seconds), False
    else:
        observer, candidates.closes_reported = native_observer()
    observer.schedule(candidates, str(candidates.folder), recursive=False, event_filter=EVENTS)
    observer.daemon = True
    observer.start()
    return observer
