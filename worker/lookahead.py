"""Chunks prepared before their task asks for them: the engine's look-ahead.

A worker that can see the chunks it has received behind the running one
(:mod:`worker.prefetch`) names them to the engine. Each is tokenized and planned on the
engine's tokenizer thread (one thread: the fast tokenizer is not safe to call twice at once,
and the same thread tokenizes a chunk's second slice). On an asynchronous device the oldest
one's forwards are also queued just before the running chunk waits for its labels, so the GPU
goes on with it while the host stores that chunk and Celery hands over to the next task.

Everything here is a hint: an entry that is never asked for costs the work done for it, an
entry asked for is used only for an equal list of texts, and whatever fails while preparing or
queueing ahead leaves the chunk to run with its own task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from worker.batching import BatchPlan
from worker.pending import Pending

log = logging.getLogger(__name__)

Ahead = Callable[[], Sequence[Sequence[str]]]  # the texts of the chunks expected next
Prepared = tuple[list[list[int]], BatchPlan]  # a chunk's (or slice's) token ids and its plan
KEPT = 4  # chunks prepared ahead and not yet asked for, at most (the oldest go first)


@dataclass(eq=False)
class Entry:
    """A chunk prepared, and perhaps queued on the device, before its task asked for it."""

    key: list[str]
    prepared: Future[Prepared]
    queued: Pending | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while being queued


class Lookahead:
    """One engine's prepared chunks, oldest first, and its tokenizer thread. Thread-safe."""

    def __init__(self, prepare: Callable[[list[str]], Prepared]) -> None:
        self._prepare = prepare
        self._entries: list[Entry] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def executor(self) -> ThreadPoolExecutor:
        """The tokenizer thread, started on first use."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="tokenizer")
            return self._pool

    def prefetch(self, texts: Sequence[str]) -> None:
        """Start preparing ``texts`` (unless this very list already is)."""
        key = texts if isinstance(texts, list) else list(texts)
        with self._lock:
            if any(e.key is key for e in self._entries):
                return
        entry = Entry(key, self.executor().submit(self._prepare, key))
        with self._lock:
            self._entries = [*self._entries, entry][-KEPT:]

    def look(self, ahead: Ahead) -> bool:
        """Prefetch the chunks ``ahead()`` lists; whether it listed any."""
        try:
            upcoming = [texts for texts in ahead() if texts]
            for texts in upcoming:
                self.prefetch(texts)
            return bool(upcoming)
        except Exception as e:
            log.warning("could not tokenize the next chunk ahead (no harm done): %r", e)
        return False

    def take(self, texts: list[str]) -> Entry | None:
        """The entry prepared for ``texts``, taken out (after any queueing of it in flight)."""
        with self._lock:
            found = next((e for e in self._entries if e.key is texts or e.key == texts), None)
            if found is None:
                return None
            self._entries = [e for e in self._entries if e is not found]
        with found.lock:
            return found

    def queue_oldest(self, submit: Callable[[list[str], Future[Prepared]], Pending]) -> None:
        """Queue the oldest entry not yet queued with ``submit``; its task then finds it."""
        with self._lock:
            entry = next((e for e in self._entries if e.queued is None), None)
        if entry is None or not entry.lock.acquire(blocking=False):
            return
        try:
            with self._lock:
                if entry not in self._entries or entry.queued is not None:
                    return  # taken meanwhile: its own task runs it
            pending = submit(entry.key, entry.prepared)
            pending.stats.dispatched_ahead = 1
            entry.queued = pending
        except Exception as e:
            log.warning("could not queue the next chunk ahead (it runs with its task): %r", e)
        finally:
            entry.lock.release()
