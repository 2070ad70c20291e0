"""Follows submitted jobs to their end: logs finished files, moves failed ones aside."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson

from emotions.constants import DONE, FAILED, QUEUED
from emotions.jobs import JobStore
from producer.failed import FailedFolder
from producer.ledger import Ledger
from producer.submit import Submitted, Submitter

log = logging.getLogger(__name__)


class Tracker:
    """The jobs this producer waits for, keyed by job id."""

    def __init__(
        self, submitter: Submitter, store: JobStore, ledger: Ledger, failed: FailedFolder
    ) -> None:
        self.submitter = submitter
        self.failed = failed
        self.store = store
        self.ledger = ledger
        self.jobs: dict[str, Submitted] = {}
        self.finished = 0

    def add(self, submitted: Submitted | None) -> None:
        if submitted is not None:
            self.jobs[submitted.job] = submitted

    def tracking(self, path: Path) -> bool:
        """True while a job for exactly this file (same size and mtime) is in flight."""
        try:
            st = path.stat()
        except OSError:
            return False
        return any(
            s.path == path and s.size == st.st_size and s.mtime == st.st_mtime
            for s in self.jobs.values()
        )

    def chunks(self) -> tuple[int, int]:
        """(chunks done, chunks in all) over the tracked jobs, for progress bars."""
        done = total = 0
        for job, sub in self.jobs.items():
            d, t = self.store.progress(job)
            done, total = done + min(d, t or sub.chunks), total + (t or sub.chunks)
        return done, total

    def poll(self) -> None:
        """Check every tracked job once and settle those that ended."""
        for job, sub in list(self.jobs.items()):
            meta = self.store.meta(job)
            state = meta.get("state")
            if state == QUEUED:
                continue
            del self.jobs[job]
            if state == DONE:
                self._done(sub, meta)
            elif state == FAILED:
                detail = orjson.loads(meta.get("detail", "{}"))
                self.failed.fail(
                    sub.path, detail.pop("error", "unknown error"), job=job, **detail
                )
            elif state is None:
                log.warning("file=%s job=%s vanished from Redis; submitting again", sub.name, job)
                self.add(self.submitter.consider(sub.path))

    def _done(self, sub: Submitted, meta: dict[str, str]) -> None:
        self.finished += 1
        self.ledger.update(sub.name, state=DONE)
        seconds = max(float(meta.get("finished", time.time())) - sub.started, 1e-6)
        records = int(meta.get("records", sub.records))
        log.info(
            "file=%s event=finished records=%d seconds=%.2f rate=%.1f/s output=%s",
            sub.name, records, seconds, records / seconds,
            orjson.loads(meta.get("detail", "{}")).get("output"),
        )  # fmt: skip
