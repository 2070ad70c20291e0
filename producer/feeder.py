"""Backpressure: chunks are sent a window at a time, over all files, as earlier ones finish.

Redis holds the window of work (``EMOTIONS_WINDOW`` chunks queued or running), not the
backlog: a folder of fifty million comments needs no more Redis memory than one of fifty
thousand. Files are fed oldest first, each read as a stream from where its job stands
(``sent`` in the job record, so a restarted producer resumes instead of starting over), so
only one file at a time is open for feeding. The same chunking runs in the assembly, which is
how labels find their records again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice

from celery import Celery

from emotions.chunking import chunks
from emotions.errors import InputError
from emotions.files import display_name
from emotions.formats import Record, iter_records
from emotions.jobs import JobStore
from emotions.messages import send_assembly, send_chunk
from emotions.modelid import model_identity
from emotions.settings import Settings
from emotions.spans import chunk_records
from producer.submit import Submitted

log = logging.getLogger(__name__)


@dataclass
class Follow:
    """A job the producer feeds and supervises: what it knows, as of its last poll."""

    sub: Submitted
    sent: int
    stored: int = 0
    last_change: float = 0.0  # monotonic time of the last progress (or of a heal)
    heals: int = 0
    touched: float = 0.0
    ended: bool = False  # ended by this producer (the poll must read it even if never fed)
    reader: Iterator[list[Record]] | None = field(default=None, repr=False)

    @property
    def outstanding(self) -> int:
        """Chunks queued or running: sent, labels not stored yet."""
        return max(0, self.sent - self.stored)


class Feeder:
    """Sends the next chunks of the oldest files while the window has room."""

    def __init__(self, settings: Settings, app: Celery, store: JobStore) -> None:
        self.settings = settings
        self.app = app
        self.store = store
        self.model = model_identity(settings.model)

    def feed(self, follows: list[Follow]) -> int:
        """Fill the window; the number of chunks sent."""
        room = self.settings.window - sum(f.outstanding for f in follows)
        sent = 0
        for f in follows:
            if room <= 0:
                break
            if f.sent >= f.sub.chunks:
                continue
            try:
                n = self._send(f, room)
            except (InputError, OSError) as e:  # the file changed or vanished while queued
                f.reader, f.ended = None, True
                reason = f"the input file changed while it was queued: {e}"
                self.store.supersede(f.sub.job, reason)
                log.warning("file=%s job=%s %s", display_name(f.sub.name), f.sub.job, reason)
                continue
            room, sent = room - n, sent + n
        return sent

    def _send(self, f: Follow, room: int) -> int:
        if f.sub.layout is not None and f.sub.layout.sliced:
            return self._send_spans(f, room)
        if f.reader is None:
            f.reader = islice(self._chunks(f.sub), f.sent, None)
        n = 0
        for chunk in islice(f.reader, room):
            try:
                send_chunk(
                    self.app, f.sub.job, f.sent, [r.comment for r in chunk], self.model, f.sub.name
                )
            except BaseException:
                # The chunk left the reader unsent: read again from ``sent`` next time, or
                # chunk k+1's texts would go out as chunk k (Redis down, or refusing writes).
                f.reader = None
                raise
            f.sent += 1
            n += 1
        if n:
            self.store.mark_sent(f.sub.job, f.sent)
        if f.sent >= f.sub.chunks:
            f.reader = None  # done with this file: close it
        return n

    def _send_spans(self, f: Follow, room: int) -> int:
        """Chunk ``f.sent`` onwards, each read from its own bytes: a chunk whose send failed
        is read again next time, not lost with a half-consumed reader."""
        n, end = 0, min(f.sub.chunks, f.sent + room)
        while f.sent < end:
            self._send_chunk(f.sub, f.sent, self._chunk(f.sub, f.sent))
            f.sent, n = f.sent + 1, n + 1
        if n:
            self.store.mark_sent(f.sub.job, f.sent)
        return n

    def _chunk(self, sub: Submitted, index: int) -> list[Record]:
        assert sub.layout is not None
        limit = self.settings.max_comment_chars
        return chunk_records(sub.path, sub.layout, index, max_comment_chars=limit)

    def _send_chunk(self, sub: Submitted, index: int, chunk: list[Record]) -> None:
        texts = [r.comment for r in chunk]
        send_chunk(self.app, sub.job, index, texts, self.model, sub.name)

    def resend(self, f: Follow, missing: set[int]) -> None:
        """Send chunks ``missing`` again (lost messages); one read of the file up to the last."""
        if f.sub.layout is not None and f.sub.layout.sliced:
            for index in sorted(missing):
                self._send_chunk(f.sub, index, self._chunk(f.sub, index))
            return
        last = max(missing)
        for index, chunk in enumerate(islice(self._chunks(f.sub), last + 1)):
            if index in missing:
                send_chunk(
                    self.app, f.sub.job, index, [r.comment for r in chunk], self.model, f.sub.name
                )

    def send_assembly(self, f: Follow) -> bool:
        """Queue the assembly of a job whose chunks are all stored, unless one is queued."""
        if not self.store.claim_assembly(f.sub.job):
            return False
        send_assembly(self.app, f.sub.job, f.sub.name)
        return True

    def _chunks(self, sub: Submitted) -> Iterator[list[Record]]:
        """The job's chunks, cut as when it was created (the settings may have changed)."""
        records = iter_records(sub.path, max_comment_chars=self.settings.max_comment_chars)
        return chunks(records, sub.chunk_size, sub.chunk_bytes)
