"""Turn one input file into a job: decide whether it needs work, check it, create its job.

The decision uses the ledger: the same content under the same model, already written, is
skipped; the same content still in flight is followed, not submitted again; new or changed
content (or a new model) becomes a new job, and a job for older content of the same file is
superseded so that only the newest content is ever written. A file renamed while in flight
keeps its job under the new name.

A file is read completely once before its job is created: every record is checked (so a bad
line at the end fails the file before any GPU time is spent on it) and counted, which gives
the job its chunk count. The chunks themselves are sent later, a window at a time, by
:class:`~producer.feeder.Feeder`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from emotions.constants import DONE, FAILED, QUEUED, stored_channel
from emotions.errors import (
    IncompleteInputError,
    InputError,
    InputTooLargeError,
)
from emotions.files import display_name, file_digest
from emotions.jobs import JobStore
from emotions.modelid import model_identity
from emotions.settings import Settings
from producer.completion import Incomplete
from producer.failed import FailedFolder
from producer.ledger import Entry, Ledger
from producer.outputs import Outputs
from producer.spool import Layout, scan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A job the producer follows to its end (and feeds with chunks)."""

    job: str
    name: str
    path: Path
    digest: str
    records: int
    chunks: int
    started: float
    size: int = -1
    mtime: float = -1.0
    sent: int = 0  # chunks already queued when the producer took the job (a resume)
    chunk_size: int = 512  # how the job's chunks are cut (the assembly cuts the same way)
    chunk_bytes: int = 256 * 1024
    # The chunks' texts as checked (None: a resumed job); the Follow that feeds it closes it.
    layout: Layout | None = field(default=None, repr=False, compare=False)
    first_seen: float = 0.0  # when the producer first saw this file (the feeding order)


class Submitter:
    """Submits files as jobs; unreadable ones go to the failed folder."""

    def __init__(
        self, settings: Settings, store: JobStore, ledger: Ledger, failed: FailedFolder
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.failed = failed
        self.model = model_identity(settings.model)
        self.outputs = Outputs(ledger, settings.output_dir)
        self._root = settings.input_dir.resolve()  # resolved once: not per file
        # Called after each chunk of a check pass: the producer feeds jobs meanwhile.
        self.between: Callable[[], None] = lambda: None

    def consider(self, path: Path) -> Submitted | None:
        """Submit ``path`` if it needs work; the job to follow, or None if nothing to follow."""
        name = path.name
        try:
            target = self._check_path(path)
            stat = path.stat()
            if stat.st_size > self.settings.max_file_bytes:
                raise InputTooLargeError(
                    f"the file is {stat.st_size:,} bytes, above the limit of "
                    f"{self.settings.max_file_bytes:,} (EMOTIONS_MAX_FILE_BYTES); split it"
                )
            entry = self.ledger.get(name)
            if entry and entry.unchanged_on_disk(stat.st_size, stat.st_mtime):
                if entry.state == FAILED:
                    return None  # its report or move failed; retried once the file changes
                finished = entry.state == DONE and entry.model == self.model
                if finished and (self.outputs.exists(entry) or self.outputs.given_up(entry)):
                    return None  # finished, and not touched since: no need to hash it
            digest = file_digest(path)
        except InputError as e:
            self.failed.fail(path, str(e))
            return None
        except FileNotFoundError:
            return None  # gone before we got to it (renamed or deleted): its new name will come
        size, mtime = stat.st_size, stat.st_mtime
        if entry and entry.same_content(digest, self.model):
            handled, resumed = self._resume(path, entry, size, mtime)
            if handled:
                return resumed
        if entry and entry.state == QUEUED:
            self.store.supersede(entry.job)
            log.info(
                "file=%s event=superseded job=%s (content or model changed)",
                display_name(name),
                entry.job,
            )
        elif entry is None and (adopted := self._adopt_renamed(path, digest, size, mtime)):
            return adopted
        return self._submit(path, target, digest, size, mtime, entry)

    def _resume(
        self, path: Path, entry: Entry, size: int, mtime: float
    ) -> tuple[bool, Submitted | None]:
        """Same content and model as recorded: (handled, job to follow); else submit anew."""
        name = path.name
        if entry.state == DONE:
            if self.outputs.exists(entry):
                if not entry.unchanged_on_disk(size, mtime):
                    self.ledger.update(name, size=size, mtime=mtime)
                log.info(
                    "file=%s event=skipped (same content and model, output exists)",
                    display_name(name),
                )
                return True, None
            return (False, None) if self.outputs.redo(name, entry, size, mtime) else (True, None)
        if entry.state != QUEUED:
            return False, None  # failed earlier and dropped in again: another attempt
        meta = self.store.meta(entry.job)
        if meta.get("state") in (QUEUED, DONE, FAILED) and "total" in meta:
            log.info(
                "file=%s event=resumed job=%s sent=%s/%s",
                display_name(name),
                entry.job,
                meta.get("sent"),
                meta["total"],
            )
            return True, self._followed(path, entry, meta, size, mtime)
        return False, None  # expired, or lost with a Redis that had no append-only file

    def _followed(
        self, path: Path, entry: Entry, meta: dict[str, str], size: int, mtime: float
    ) -> Submitted:
        """A job already in Redis, to follow; an ended job's record keeps no digest or
        chunking (it is only followed to its end)."""
        total = int(meta["total"])
        return Submitted(
            entry.job,
            path.name,
            path,
            meta.get("digest", ""),
            int(meta.get("records", 0)),
            total,
            time.time(),
            size,
            mtime,
            int(meta.get("sent", total)),
            int(meta.get("chunk_size", self.settings.chunk_size)),
            int(meta.get("chunk_bytes", self.settings.chunk_bytes)),
            first_seen=entry.first_seen,
        )

    def _adopt_renamed(self, path: Path, digest: str, size: int, mtime: float) -> Submitted | None:
        """A new name whose content is a job in flight under a name that is gone: a rename.
        The job moves to the new name (and its output to the new name's) instead of starting
        over, so a file renamed in flight gives one output, named after its new name."""
        old = self.ledger.renamed_from(digest)
        entry = self.ledger.get(old) if old else None
        if old is None or entry is None or entry.state != QUEUED:
            return None
        if not entry.same_content(digest, self.model) or os.path.lexists(path.parent / old):
            return None  # another model's job, or a copy: the old name is still there
        meta = self.store.meta(entry.job)
        if meta.get("state") != QUEUED or "total" not in meta:
            return None
        self.ledger.forget(old)
        output = self.outputs.claim(path.name)
        self.store.rename(entry.job, display_name(path.name), os.fsencode(path.resolve()), output)
        entry = self.ledger.put(path.name, replace(entry, size=size, mtime=mtime, output=output))
        log.info("file=%s event=renamed from=%s job=%s", display_name(path.name), old, entry.job)
        return self._followed(path, entry, meta, size, mtime)

    def _submit(
        self, path: Path, target: Path, digest: str, size: int, mtime: float, prior: Entry | None
    ) -> Submitted | None:
        """Check every record, then create the job (its chunks are sent by the feeder).

        ``prior``: the file's ledger entry, whose first-seen time the new job keeps (the
        feeding order), and whose redo count it keeps when the same content is made again.
        """
        settings = self.settings
        started = time.time()
        try:
            layout = scan(
                path,
                settings.chunk_size,
                settings.chunk_bytes,
                max_comment_chars=settings.max_comment_chars,
                spool_dir=settings.spool_dir,
                on_chunk=self.between,
            )
        except IncompleteInputError as e:  # cut short: no job yet; the caller defers the file
            raise Incomplete(path, str(e)) from e
        except (InputError, OSError) as e:
            if isinstance(e, FileNotFoundError):
                return None
            self.failed.fail(path, str(e))
            return None
        try:
            return self._create(path, target, digest, size, mtime, prior, layout, started)
        except BaseException:
            layout.close()
            raise

    def _create(
        self,
        path: Path,
        target: Path,
        digest: str,
        size: int,
        mtime: float,
        prior: Entry | None,
        layout: Layout,
        started: float,
    ) -> Submitted:
        """The job of a checked file, in Redis with its ledger entry."""
        name, settings = path.name, self.settings
        records, total = layout.records, layout.chunks
        job = uuid.uuid4().hex
        output = self.outputs.claim(name)
        pipe = self.store.creating(
            job,
            name=display_name(name),
            path=os.fsencode(target),
            output=output,
            digest=digest,
            model=self.model,
            chunk_size=settings.chunk_size,
            chunk_bytes=settings.chunk_bytes,
            total=total,
            records=records,
            notify=stored_channel(self.ledger.folder),
        )
        entry = Entry(job, digest, self.model, QUEUED, size, mtime, records, output=output)
        first_seen = started
        if prior is not None:
            first_seen = prior.first_seen or started
            if prior.state == DONE and prior.same_content(digest, self.model):
                entry = replace(entry, redone=prior.redone + 1)  # its output went missing
        self.ledger.put(name, replace(entry, first_seen=first_seen), pipe)
        pipe.execute()  # the job and its ledger entry, in one transaction
        log.info(
            "file=%s event=enqueued job=%s records=%d chunks=%d",
            display_name(name),
            job,
            records,
            total,
        )
        return Submitted(
            job,
            name,
            path,
            digest,
            records,
            total,
            started,
            size,
            mtime,
            0,
            settings.chunk_size,
            settings.chunk_bytes,
            layout=layout,
            first_seen=first_seen,
        )

    def _check_path(self, path: Path) -> Path:
        """Refuse what could read outside the input folder (symlinks pointing elsewhere); the
        file's resolved path."""
        root = self._root
        try:
            target = path.resolve()
        except (RuntimeError, OSError) as e:  # Python 3.11 raises RuntimeError on a loop
            raise InputError(
                f"the file is a symbolic link that cannot be followed ({e}); copy the file in"
            ) from e
        if path.is_symlink() and root not in target.parents:
            raise InputError(
                "the file is a symbolic link to outside the input folder; copy the file in instead"
            )
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(path)  # gone before we got to it: not a failure
        if not path.is_file():
            raise InputError("not a regular file")
        return target
