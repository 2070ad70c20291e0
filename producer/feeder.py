"""Backpressure: chunks are sent a window at a time, shared fairly by the files in flight.

Redis holds the window of work (``EMOTIONS_WINDOW`` chunks queued or running), not the
backlog: a folder of fifty million comments needs no more Redis memory than one of fifty
thousand. The window is shared round-robin: each pass gives every file with unsent chunks one
chunk, least recently fed first (a file never fed before goes first, then by the time its name
was first seen, which the ledger keeps across restarts), so a small file arriving behind a big
one gets room as soon as one chunk finishes. A restarted producer resumes each job from where
it stands (``sent`` in the job record) instead of starting over.

Chunk ``k``'s texts come from the spool its check wrote (:mod:`producer.spool`), so chunk ``k``
can be sent again, after any failure, with exactly the texts the check read as chunk ``k``. A
job resumed from an earlier run has no spool: its file is checked again, and a file that no
longer gives the job's chunk count changed (the job is superseded, the file taken again).

One feed publishes its chunks in one batch (kombu's Redis pipeline: one round trip instead of
two per chunk). A batch that fails may have delivered some of its chunks; none of them counts
as sent, so they are sent again: a worker skips a chunk whose labels are already stored.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

from celery import Celery

from emotions.errors import InputError
from emotions.files import display_name
from emotions.jobs import JobStore
from emotions.messages import Texts, send_assembly
from emotions.modelid import model_identity
from emotions.publish import ChunkBatch, Publisher
from emotions.settings import Settings
from producer.spool import Layout, scan
from producer.submit import Submitted

log = logging.getLogger(__name__)


class Shrunk(InputError):
    """The file no longer gives the chunk count its job was created with: it changed."""


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
    # The chunks' texts, as checked (None: a resumed job, checked again when first needed).
    layout: Layout | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.layout is None:
            self.layout = self.sub.layout

    @property
    def outstanding(self) -> int:
        """Chunks queued or running: sent, labels not stored yet."""
        return max(0, self.sent - self.stored)

    @property
    def unsent(self) -> bool:
        return not self.ended and self.sent < self.sub.chunks

    def close(self) -> None:
        """Drop the spool (the job ended, was superseded or renamed, or the producer stops)."""
        layout, self.layout = self.layout, None
        if layout is not None:
            layout.close()


class Feeder:
    """Shares the window among the files in flight, one chunk per file per pass."""

    def __init__(self, settings: Settings, app: Celery, store: JobStore) -> None:
        self.settings = settings
        self.app = app
        self.store = store
        self.model = model_identity(settings.model)
        self.publisher = Publisher(app)
        self._turns = itertools.count(1)

    def feed(self, follows: list[Follow]) -> int:
        """Fill the window; the number of chunks sent. Redis errors propagate, and then no
        chunk of this feed counts as sent (they are sent again next time)."""
        room = self.room(follows)
        queue = sorted((f for f in follows if f.unsent), key=lambda f: (f.fed, f.sub.first_seen))
        if room <= 0 or not queue:
            return 0
        before = {f.sub.job: (f, f.sent, f.fed) for f in queue}
        try:
            with self.publisher.batch() as batch:
                while room > 0 and queue:
                    later: list[Follow] = []
                    for f in queue:
                        if room <= 0:
                            break
                        if self._send_one(f, batch):
                            room -= 1
                            if f.unsent:
                                later.append(f)
                    queue = later
        except BaseException:
            for f, sent, turn in before.values():
                f.sent, f.fed = sent, turn  # delivery uncertain: sent again next time
            raise
        fed = [(f, f.sent - sent) for f, sent, _ in before.values() if f.sent != sent]
        if fed:
            pipe = self.store.r.pipeline()
            for f, _ in fed:
                self.store.queue_sent(pipe, f.sub.job, f.sent)
            pipe.execute()
        return sum(count for _, count in fed)

    def room(self, follows: list[Follow]) -> int:
        """Chunks the window takes now: its size less those sent and not stored yet."""
        return self.settings.window - sum(f.outstanding for f in follows)

    def _send_one(self, f: Follow, batch: ChunkBatch) -> bool:
        """Send the job's next chunk; False when the file changed (the job is superseded)."""
        try:
            texts = self._texts(f, f.sent)
        except (InputError, OSError) as e:  # the file changed or vanished before its check
            self.changed(f, e)
            return False
        batch.send(f.sub.job, f.sent, texts, self.model, f.sub.name)
        f.sent, f.fed = f.sent + 1, next(self._turns)
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

    def _texts(self, f: Follow, index: int) -> Texts:
        """Chunk ``index``'s texts from the job's spool, checking the file first if the job
        was resumed (raises :class:`Shrunk` if it no longer gives the job's chunks)."""
        if f.layout is None:
            sub = f.sub
            layout = scan(
                sub.path,
                sub.chunk_size,
                sub.chunk_bytes,
                max_comment_chars=self.settings.max_comment_chars,
                spool_dir=self.settings.spool_dir,
            )
            if layout.chunks != sub.chunks or (sub.records and layout.records != sub.records):
                layout.close()
                raise Shrunk(
                    f"it now has {layout.records} records in {layout.chunks} chunk(s), not "
                    f"{sub.records} in {sub.chunks}"
                )
            f.layout = layout
        return f.layout.texts(index)

    def resend(self, f: Follow, missing: set[int]) -> None:
        """Send chunks ``missing`` again (lost messages), from the spool."""
        with self.publisher.batch() as batch:
            for index in sorted(missing):
                batch.send(f.sub.job, index, self._texts(f, index), self.model, f.sub.name)

    def send_assembly(self, f: Follow) -> bool:
        """Queue the assembly of a job whose chunks are all stored, unless one is queued."""
        if not self.store.claim_assembly(f.sub.job):
            return False
        send_assembly(self.app, f.sub.job, f.sub.name)
        return True
