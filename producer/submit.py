"""Turn one input file into a job: decide whether it needs work, then enqueue its chunks.

The decision uses the ledger: the same content under the same model, already written, is
skipped; the same content still in flight is tracked, not enqueued again; new or changed
content (or a new model) becomes a new job, and a job for older content of the same file is
superseded so that only the newest complete content is ever written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from emotions.constants import DONE, FAILED, QUEUED
from emotions.errors import EmotionsError, IncompleteInputError, InputError, InputTooLargeError
from emotions.jobs import JobStore
from emotions.messages import send_assembly, send_chunk
from emotions.output import output_path
from emotions.settings import Settings
from producer.chunking import chunks
from producer.completion import Incomplete
from producer.failed import FailedFolder
from producer.formats import iter_records
from producer.ledger import Entry, Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A job the producer is waiting for."""

    job: str
    name: str
    path: Path
    records: int
    chunks: int
    started: float
    size: int = -1
    mtime: float = -1.0


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, read in blocks (files may be gigabytes)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class Submitter:
    """Submits files as jobs; unreadable ones go to the failed folder."""

    def __init__(
        self, settings: Settings, app: Celery, store: JobStore, ledger: Ledger, failed: FailedFolder
    ) -> None:
        self.settings = settings
        self.app = app
        self.store = store
        self.ledger = ledger
        self.failed = failed

    def consider(self, path: Path) -> Submitted | None:
        """Submit ``path`` if it needs work; the job to wait for, or None if nothing to wait for."""
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
            if (entry and entry.state == DONE and entry.model == self.settings.model
                    and entry.unchanged_on_disk(stat.st_size, stat.st_mtime)
                    and self._output_exists(name)):  # fmt: skip
                return None  # finished, and not touched since: no need to hash it again
            digest = file_digest(path)
        except InputError as e:
            self.failed.fail(path, str(e))
            return None
        except FileNotFoundError:
            return None  # gone before we got to it (renamed or deleted): its new name will come
        if entry and entry.same_content(digest, self.settings.model):
            handled, resumed = self._resume(path, entry, stat.st_size, stat.st_mtime)
            if handled:
                return resumed
        if entry and entry.state == QUEUED:
            self.store.supersede(entry.job)
            log.info("file=%s event=superseded job=%s (content or model changed)", name, entry.job)
        return self._submit(path, digest, stat.st_size, stat.st_mtime)

    def _resume(
        self, path: Path, entry: Entry, size: int, mtime: float
    ) -> tuple[bool, Submitted | None]:
        """Same content and model as recorded: (handled, job to wait for); else submit anew."""
        name = path.name
        if entry.state == DONE:
            if self._output_exists(name):
                if not entry.unchanged_on_disk(size, mtime):
                    self.ledger.update(name, size=size, mtime=mtime)
                log.info("file=%s event=skipped (same content and model, output exists)", name)
                return True, None
            return False, None  # output was deleted: redo it
        if entry.state != QUEUED:
            return False, None  # failed earlier and dropped in again: another attempt
        meta = self.store.meta(entry.job)
        if meta.get("state") == QUEUED and meta.get("submitted") == "1":
            done, total = self.store.progress(entry.job)
            if total is not None and done == total:
                # Every chunk is done but no assembly ran (a crash between the two): queue it.
                send_assembly(self.app, entry.job, name)
            log.info("file=%s event=resumed job=%s chunks=%d/%s", name, entry.job, done, total)
            return True, Submitted(
                entry.job, name, path, entry.records, total or 0, time.time(), size, mtime
            )
        if meta.get("state") in (DONE, FAILED):
            return True, Submitted(
                entry.job, name, path, entry.records, 0, time.time(), size, mtime
            )
        return False, None  # expired, or the producer died while enqueueing: start over

    def _submit(self, path: Path, digest: str, size: int, mtime: float) -> Submitted | None:
        name, model = path.name, self.settings.model
        job = uuid.uuid4().hex
        started = time.time()
        self.store.create(job, name=name, model=model, digest=digest)
        self.ledger.put(name, Entry(job, digest, model, QUEUED, size, mtime))
        records = count = 0
        try:
            for count, chunk in enumerate(
                chunks(iter_records(path, max_comment_chars=self.settings.max_comment_chars),
                       self.settings.chunk_size),
                start=1,
            ):  # fmt: skip
                send_chunk(self.app, job, count - 1, chunk, model, name)
                records += len(chunk)
        except IncompleteInputError as e:  # cut short: withdraw the job, the caller defers the file
            self.store.supersede(job)
            raise Incomplete(path, str(e)) from e
        except (InputError, OSError) as e:
            self.store.fail(job, {"error": str(e)})
            self.failed.fail(path, str(e))
            return None
        self.ledger.update(name, records=records)
        if self.store.set_total(job, count, records) == 1:
            send_assembly(self.app, job, name)
        log.info("file=%s event=enqueued job=%s records=%d chunks=%d", name, job, records, count)
        return Submitted(job, name, path, records, count, started, size, mtime)

    def _check_path(self, path: Path) -> None:
        """Refuse what could read outside the input folder (symlinks pointing elsewhere)."""
        root = self.settings.input_dir.resolve()
        if path.is_symlink() and root not in path.resolve().parents:
            raise InputError(
                "the file is a symbolic link to outside the input folder; copy the file in instead"
            )
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(path)  # gone before we got to it: not a failure
        if not path.is_file():
            raise InputError("not a regular file")

    def _output_exists(self, name: str) -> bool:
        try:
            return os.path.isfile(output_path(self.settings.output_dir, name))
        except EmotionsError:
            return False
