"""The order in which complete files are taken: each file once, the right ones first.

A folder may hold 100,000 files waiting while a new one arrives: it must not wait behind all
of them. Files that are complete (:mod:`producer.completion`) wait here, each at most once
however often rescans find it again, in three classes:

0. files that were in flight when the producer started, oldest first-seen time first (the
   ledger keeps that time), so a restart resumes in the order files arrived, not by name;
1. files announced by a watchdog event (new, written, moved in), in the order they settled;
2. files found by a rescan only (present at start, events lost, polled mounts).

A file handed out and then put back (Redis went away while it was being taken) goes first.
Entries hold the file's name, not a ``Path`` (a few hundred bytes less each: a folder of
100,000 files waits in about 20 MiB).
"""

from __future__ import annotations

import heapq
import itertools
from pathlib import Path

RESUMED, ANNOUNCED, SCANNED = 0, 1, 2
_AGAIN = -1  # put back after an interruption: before everything else


class ReadyQueue:
    """Complete files of one folder waiting to be taken, each once, by class, then by time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._heap: list[tuple[int, float, int, str]] = []
        self._members: set[str] = set()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, Path) and path.name in self._members

    def push(self, path: Path, kind: int, when: float = 0.0) -> None:
        """Queue ``path`` (a file of the folder) unless it is queued already (then its place
        stays)."""
        name = path.name
        if name in self._members:
            return
        self._members.add(name)
        heapq.heappush(self._heap, (kind, when, next(self._seq), name))

    def again(self, path: Path) -> None:
        """Put back a file whose take was interrupted: it goes first next turn."""
        self.push(path, _AGAIN)

    def pop(self) -> Path | None:
        """The next file to take; None when none waits."""
        if not self._heap:
            return None
        name = heapq.heappop(self._heap)[3]
        self._members.discard(name)
        return self.folder / name
