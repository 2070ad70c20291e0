"""The two tasks: classify a chunk (``inference`` queue) and assemble a file (``results``).

Retries are decided by type: :class:`~emotions.errors.PermanentError` fails at once, anything
else (CUDA errors, out of memory, lost connections) is retried with exponential back-off up
to ``EMOTIONS_MAX_RETRIES``. When a chunk fails for good its job is marked failed with the
chunk and the cause, so the producer can move the file aside; no partial output is written.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from emotions.constants import ASSEMBLE_TASK, CLASSIFY_TASK, QUEUED
from emotions.errors import ModelMismatchError, OutputWriteError, PermanentError
from emotions.files import write_atomic
from emotions.jobs import JobStore, connect
from emotions.messages import send_assembly
from emotions.output import PartMissing, json_array, output_path, render
from worker.celery import app, get_settings
from worker.lifecycle import holder

log = logging.getLogger(__name__)


@functools.cache
def store() -> JobStore:
    """This process's job store, on the result backend's Redis."""
    settings = get_settings()
    return JobStore(connect(settings.backend_url), settings.result_ttl)


def backoff(retries: int) -> int:
    """Seconds before retry number ``retries + 1``: 1, 2, 4, ... capped by the setting."""
    return int(min(get_settings().retry_backoff_max, 2**retries))


@app.task(name=CLASSIFY_TASK, bind=True)
def classify_chunk(self: Any, job: str, index: int, records: list[list[Any]], model: str,
                   name: str) -> int:  # fmt: skip
    """Label one chunk of ``[id, comment]`` records and store its output records."""
    settings = get_settings()
    started = time.perf_counter()
    if store().meta(job).get("state") != QUEUED:
        log.info("file=%s chunk=%d skipped: job superseded, failed or expired", name, index)
        return 0
    try:
        if model != settings.model:
            raise ModelMismatchError(
                f"chunk was queued for model {model!r} but this worker holds {settings.model!r}; "
                "give producer and workers the same EMOTIONS_MODEL"
            )
        labels = holder().engine.classify([text for _, text in records])
        outcome = store().store_part(job, index, render(records, labels))
    except Exception as e:
        if not isinstance(e, PermanentError) and self.request.retries < settings.max_retries:
            log.warning("file=%s chunk=%d retry=%d error=%r", name, index, self.request.retries, e)
            raise self.retry(exc=e, countdown=backoff(self.request.retries)) from e
        error = {"error": f"{type(e).__name__}: {e}", "chunk": index, "file": name,
                 "retries": self.request.retries}  # fmt: skip
        store().fail(job, error)
        log.error("file=%s chunk=%d failed for good: %r", name, index, e)
        raise
    if outcome == 1:
        send_assembly(app, job, name)
    seconds = time.perf_counter() - started
    log.info(
        "file=%s chunk=%d records=%d seconds=%.3f rate=%.1f/s%s",
        name, index, len(records), seconds, len(records) / max(seconds, 1e-9),
        " (job no longer active, result dropped)" if outcome == -1 else "",
    )  # fmt: skip
    return len(records)


@app.task(name=ASSEMBLE_TASK, bind=True)
def assemble_file(self: Any, job: str, name: str) -> str:
    """Write ``<output>/<stem>.json`` from every chunk's records, atomically, once."""
    settings = get_settings()
    meta = store().meta(job)
    if meta.get("state") != QUEUED:
        return f"skipped: job is {meta.get('state', 'expired')}"
    path = output_path(settings.output_dir, name)
    try:
        write_atomic(path, json_array(store().parts(job, int(meta["total"]))))
    except PartMissing:
        return "skipped: job ended during assembly"
    except OutputWriteError as e:
        # Chunk results stay in Redis; retry until the disk has room again.
        log.error("file=%s cannot write output, will retry: %s", name, e)
        raise self.retry(exc=e, countdown=backoff(self.request.retries), max_retries=None) from e
    store().finish(job, str(path))
    log.info("file=%s written=%s records=%s chunks=%s", name, path, meta.get("records"),
             meta["total"])  # fmt: skip
    return str(path)
