"""The order in which complete files are taken: each file once, the right ones first.

A folder may hold 100,000 files waiting while a new one arrives: it must not wait behind all
of them. Files that are complete (:mod:`producer.completion`) wait here, each at most once
however often rescans find it again, in three classes:

0. files that were in flight when the producer started, oldest first-seen time first (the
   ledger keeps that time), so a restart resumes in the order files arrived, not by name;
1. files announced by a watchdog event (new, written, moved in), in the order they settled;
2. files found by a rescan only (present at start, events lost, polled mounts).

A file handed out and then put back (Redis went away while it was being taken) goes first.
"""

from __future__ import annotations

import heapq
import itertools
from pathlib import Path

RESUMED, ANNOUNCED, SCANNED = 0, 1, 2
_AGAIN = -1  # put back after an interruption: before everything else


class ReadyQueue:
    """Complete files waiting to be taken, each once, by class and then by time."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, float, int, Path]] = []
        self._members: set[Path] = set()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, path: object) -> bool:
        return path in self._members

    def push(self, path: Path, kind: int, when: float = 0.0) -> None:
        """Queue ``path`` unless it is queued already (then its place stays)."""
        if path in self._members:
            return
        self._members.add(path)
        heapq.heappush(self._heap, (kind, when, next(self._seq), path))

    def again(self, path: Path) -> None:
        """Put back a file whose take was interrupted: it goes first next turn."""
        self.push(path, _AGAIN)

    def pop(self) -> Path | None:
        """The next file to take; None when none waits."""
        if not self._heap:
            return None
        path = heapq.heappop(self._heap)[3]
        self._members.discard(path)
        return path
