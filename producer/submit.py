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
from dataclasses import dataclass, replace
from pathlib import Path

from emotions.chunking import chunks
from emotions.constants import DONE, FAILED, QUEUED
from emotions.errors import (
    EmotionsError,
    IncompleteInputError,
    InputError,
    InputTooLargeError,
)
from emotions.files import display_name, file_digest, inside
from emotions.formats import iter_records
from emotions.jobs import JobStore
from emotions.modelid import model_identity
from emotions.settings import Settings
from producer.completion import Incomplete
from producer.failed import FailedFolder
from producer.ledger import Entry, Ledger

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

    def consider(self, path: Path) -> Submitted | None:
        """Submit ``path`` if it needs work; the job to follow, or None if nothing to follow."""
        name = path.name
        try:
            self._check_path(path)
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
                if entry.state == DONE and entry.model == self.model and self._output_exists(entry):
                    return None  # finished, and not touched since: no need to hash it again
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
        return self._submit(path, digest, size, mtime)

    def _resume(
        self, path: Path, entry: Entry, size: int, mtime: float
    ) -> tuple[bool, Submitted | None]:
        """Same content and model as recorded: (handled, job to follow); else submit anew."""
        name = path.name
        if entry.state == DONE:
            if self._output_exists(entry):
                if not entry.unchanged_on_disk(size, mtime):
                    self.ledger.update(name, size=size, mtime=mtime)
                log.info(
                    "file=%s event=skipped (same content and model, output exists)",
                    display_name(name),
                )
                return True, None
            return False, None  # output was deleted: redo it
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
            return True, self._followed(path, entry.job, meta, size, mtime)
        return False, None  # expired, or lost with a Redis that had no append-only file

    def _followed(
        self, path: Path, job: str, meta: dict[str, str], size: int, mtime: float
    ) -> Submitted:
        """A job already in Redis, to follow; an ended job's record keeps no digest or
        chunking (it is only followed to its end)."""
        total = int(meta["total"])
        return Submitted(
            job,
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
        )

    def _adopt_renamed(self, path: Path, digest: str, size: int, mtime: float) -> Submitted | None:
        """A new name whose content is a job in flight under a name that is gone: a rename.
        The job moves to the new name (and its output to the new name's) instead of starting
        over, so a file renamed in flight gives one output, named after its new name."""
        candidates = {
            old: entry
            for old, entry in self.ledger.all().items()
            if entry.state == QUEUED and entry.same_content(digest, self.model)
        }
        if not candidates:
            return None
        present = {display_name(p.name) for p in path.parent.iterdir()}
        for old, entry in candidates.items():
            meta = self.store.meta(entry.job)
            if old in present or meta.get("state") != QUEUED or "total" not in meta:
                continue
            self.ledger.forget(old)
            output = self.ledger.claim_output(path.name)
            self.store.rename(
                entry.job, display_name(path.name), os.fsencode(path.resolve()), output
            )
            self.ledger.put(path.name, replace(entry, size=size, mtime=mtime, output=output))
            log.info(
                "file=%s event=renamed from=%s job=%s", display_name(path.name), old, entry.job
            )
            return self._followed(path, entry.job, meta, size, mtime)
        return None

    def _submit(self, path: Path, digest: str, size: int, mtime: float) -> Submitted | None:
        """Check every record, then create the job (its chunks are sent by the feeder)."""
        name, settings = path.name, self.settings
        started = time.time()
        try:
            records = total = 0
            stream = iter_records(path, max_comment_chars=settings.max_comment_chars)
            for chunk in chunks(stream, settings.chunk_size, settings.chunk_bytes):
                total += 1
                records += len(chunk)
        except IncompleteInputError as e:  # cut short: no job yet; the caller defers the file
            raise Incomplete(path, str(e)) from e
        except (InputError, OSError) as e:
            if isinstance(e, FileNotFoundError):
                return None
            self.failed.fail(path, str(e))
            return None
        job = uuid.uuid4().hex
        output = self.ledger.claim_output(name)
        self.store.create(
            job,
            name=display_name(name),
            path=os.fsencode(path.resolve()),
            output=output,
            digest=digest,
            model=self.model,
            chunk_size=settings.chunk_size,
            chunk_bytes=settings.chunk_bytes,
            total=total,
            records=records,
        )
        self.ledger.put(
            name, Entry(job, digest, self.model, QUEUED, size, mtime, records, output=output)
        )
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
        )

    def _check_path(self, path: Path) -> None:
        """Refuse what could read outside the input folder (symlinks pointing elsewhere)."""
        root = self.settings.input_dir.resolve()
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

    def _output_exists(self, entry: Entry) -> bool:
        try:
            return bool(entry.output) and os.path.isfile(
                inside(self.settings.output_dir, entry.output)
            )
        except EmotionsError:
            return False
