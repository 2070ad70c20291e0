"""Backpressure: chunks are sent a window at a time, shared fairly by the files in flight.

Redis holds the window of work (``EMOTIONS_WINDOW`` chunks queued or running), not the
backlog: a folder of fifty million comments needs no more Redis memory than one of fifty
thousand. The window is shared round-robin: each pass gives every file with unsent chunks one
chunk, least recently fed first (a file never fed before goes first, then by the time its name
was first seen, which the ledger keeps across restarts), so a small file arriving behind a big
one gets room as soon as one chunk finishes. Each file is read as a stream from where its job
stands (``sent`` in the job record, so a restarted producer resumes instead of starting over).
The same chunking runs in the assembly, which is how labels find their records again.

A chunk pulled from a file's reader is held until its send succeeded: if the send raises
(Redis refusing writes, a timeout), the next feed sends that same chunk under the same index.
So the text sent as chunk k is always chunk k of the input, whatever failed in between.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import BinaryIO

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


class Shrunk(InputError):
    """The file ends before the chunk count its job was created with: it changed."""


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
    fed: int = 0  # the feeder's turn in which this job last got a chunk (0: never)
    reader: Iterator[list[Record]] | None = field(default=None, repr=False)
    held: list[Record] | None = field(default=None, repr=False)  # pulled, not sent yet
    # The file, open while its chunks are read from their spans: a file renamed while it is
    # fed is still read (the job follows the new name), and as the content it was checked as.
    handle: BinaryIO | None = field(default=None, repr=False)

    @property
    def outstanding(self) -> int:
        """Chunks queued or running: sent, labels not stored yet."""
        return max(0, self.sent - self.stored)

    @property
    def unsent(self) -> bool:
        return not self.ended and self.sent < self.sub.chunks

    def close(self) -> None:
        """Close the file being read (the job ended, was renamed or is fully sent)."""
        reader, self.reader, self.held = self.reader, None, None
        close(reader)
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()


def close(iterator: object) -> None:
    """Close a generator now (its file with it) instead of whenever it is collected."""
    method = getattr(iterator, "close", None)
    if method is not None:
        method()


class Feeder:
    """Shares the window among the files in flight, one chunk per file per pass."""

    def __init__(self, settings: Settings, app: Celery, store: JobStore) -> None:
        self.settings = settings
        self.app = app
        self.store = store
        self.model = model_identity(settings.model)
        self._turns = itertools.count(1)

    def feed(self, follows: list[Follow]) -> int:
        """Fill the window; the number of chunks sent. Redis errors propagate (the chunk in
        hand is kept for the next feed); ``sent`` is recorded for every job fed before."""
        room = self.room(follows)
        queue = sorted((f for f in follows if f.unsent), key=lambda f: (f.fed, f.sub.first_seen))
        fed: dict[str, Follow] = {}
        sent = 0
        try:
            while room > 0 and queue:
                later: list[Follow] = []
                for f in queue:
                    if room <= 0:
                        break
                    if self._send_one(f):
                        fed[f.sub.job] = f
                        room, sent = room - 1, sent + 1
                        if f.unsent:
                            later.append(f)
                queue = later
        finally:
            for f in fed.values():
                self.store.mark_sent(f.sub.job, f.sent)
        return sent

    def room(self, follows: list[Follow]) -> int:
        """Chunks the window takes now: its size less those sent and not stored yet."""
        return self.settings.window - sum(f.outstanding for f in follows)

    def _send_one(self, f: Follow) -> bool:
        """Send the job's next chunk; False when the file changed (the job is superseded)."""
        try:
            if f.held is None:
                f.held = self._pull(f)
        except (InputError, OSError) as e:  # the file changed or vanished while queued
            self.changed(f, e)
            return False
        self._send_chunk(f.sub, f.sent, f.held)
        f.held, f.sent, f.fed = None, f.sent + 1, next(self._turns)
        if f.sent >= f.sub.chunks:
            f.close()  # done with this file: close it
        return True

    def changed(self, f: Follow, error: Exception) -> None:
        """The file no longer holds the job's chunks: supersede the job (the file is taken
        again as it is now). Superseded first: if Redis refuses that, the job is still fed
        and followed, and this runs again on the next feed."""
        reason = f"the input file changed while it was queued: {error}"
        self.store.supersede(f.sub.job, reason)
        f.close()
        f.ended = True
        log.warning("file=%s job=%s %s", display_name(f.sub.name), f.sub.job, reason)

    def _pull(self, f: Follow) -> list[Record]:
        """Chunk ``f.sent``: read from its own bytes when the check recorded them, else from
        the file's reader (a resumed job, or a JSON document)."""
        if f.sub.layout is not None and f.sub.layout.sliced:
            return self._chunk(f, f.sent)
        if f.reader is None:
            f.reader = self._from(f.sub, f.sent)
        chunk = next(f.reader, None)
        if chunk is None:
            raise Shrunk(f"it now has {f.sent} chunk(s), not {f.sub.chunks}")
        return chunk

    def _from(self, sub: Submitted, start: int) -> Iterator[list[Record]]:
        """The job's chunks from index ``start``; closing it closes the file at once."""
        records = iter_records(sub.path, max_comment_chars=self.settings.max_comment_chars)
        cut = chunks(records, sub.chunk_size, sub.chunk_bytes)
        try:
            yield from islice(cut, start, None)
        finally:
            close(cut)
            close(records)

    def _chunk(self, f: Follow, index: int) -> list[Record]:
        assert f.sub.layout is not None
        if f.handle is None:
            f.handle = f.sub.path.open("rb")
        limit = self.settings.max_comment_chars
        return chunk_records(
            f.sub.path, f.sub.layout, index, max_comment_chars=limit, stream=f.handle
        )

    def _send_chunk(self, sub: Submitted, index: int, chunk: list[Record]) -> None:
        texts = [r.comment for r in chunk]
        send_chunk(self.app, sub.job, index, texts, self.model, sub.name)

    def resend(self, f: Follow, missing: set[int]) -> None:
        """Send chunks ``missing`` again (lost messages): each from its own bytes, or in one
        read of the file up to the last."""
        if f.sub.layout is not None and f.sub.layout.sliced:
            for index in sorted(missing):
                self._send_chunk(f.sub, index, self._chunk(f, index))
            return
        last = max(missing)
        reader = self._from(f.sub, 0)
        try:
            for index, chunk in enumerate(islice(reader, last + 1)):
                if index in missing:
                    self._send_chunk(f.sub, index, chunk)
        finally:
            close(reader)

    def send_assembly(self, f: Follow) -> bool:
        """Queue the assembly of a job whose chunks are all stored, unless one is queued."""
        if not self.store.claim_assembly(f.sub.job):
            return False
        send_assembly(self.app, f.sub.job, f.sub.name)
        return True
