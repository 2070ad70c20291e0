"""Which files in the input folder are ready to take, from watchdog events and rescans.

watchdog reports a create when writing starts, a move inside the folder as a move, and no
event at all for files present at start; inotify can overflow and drop events, and network
or FUSE mounts (Drive, NFS, CIFS) give none. So events and periodic rescans both only nominate
candidates, and a candidate is taken once its size and mtime have stayed still for
``EMOTIONS_SETTLE_SECONDS``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

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


class Candidates(FileSystemEventHandler):
    """Files nominated by events or scans, waiting for their size and mtime to settle."""

    def __init__(self, folder: Path, settle_seconds: float) -> None:
        self.folder = folder.resolve()
        self.settle = settle_seconds
        self._lock = threading.Lock()
        self._pending: dict[Path, tuple[tuple[int, float], float]] = {}

    def nominate(self, path: Path) -> None:
        """Add a file of the folder to the candidates (hidden and temporary names excepted)."""
        if not takeable(path):
            return
        with self._lock:
            self._pending.setdefault(path, ((-1, -1.0), time.monotonic()))

    def scan(self) -> None:
        """Nominate every file in the folder (start-up, lost events, polling mounts)."""
        try:
            for path in self.folder.iterdir():
                self.nominate(path)
        except OSError as e:
            log.error("cannot list input folder %s: %s", self.folder, e)

    def settled(self) -> list[Path]:
        """Candidates whose size and mtime have not changed for the settle time."""
        now, ready = time.monotonic(), []
        with self._lock:
            for path, (seen, since) in list(self._pending.items()):
                try:
                    st = path.lstat()
                except OSError:
                    del self._pending[path]  # renamed or deleted: its new name gets an event
                    continue
                current = (st.st_size, st.st_mtime)
                if current != seen:
                    self._pending[path] = (current, now)
                elif now - since >= self.settle:
                    del self._pending[path]
                    ready.append(path)
        return sorted(ready)

    def on_created(self, event: FileSystemEvent) -> None:
        self._event(event.src_path)

    def on_modified(self, event: FileSystemEvent) -> None:
        self._event(event.src_path)

    def on_closed(self, event: FileSystemEvent) -> None:
        self._event(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        self._event(event.dest_path)

    def _event(self, raw: str | bytes) -> None:
        path = Path(os.fsdecode(raw))
        if path.parent.resolve() == self.folder:  # a move out of the folder lands elsewhere
            self.nominate(self.folder / path.name)


def start_observer(candidates: Candidates, poll: bool, poll_seconds: float = 2.0) -> BaseObserver:
    """Start watchdog on the folder: inotify (or the platform's native API), or polling."""
    observer: BaseObserver = PollingObserver(timeout=poll_seconds) if poll else Observer()
    observer.schedule(candidates, str(candidates.folder), recursive=False)
    observer.daemon = True
    observer.start()
    return observer
