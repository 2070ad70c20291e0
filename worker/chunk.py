"""Labelling one chunk: the plain function behind the ``classify_chunk`` task.

It takes the engine and the job store as arguments, so tests and tools call it without
Celery. Order matters: the model is checked before the start is counted (a worker holding
another model hands the chunk back without using up its starts), the start is counted before
any work (so a chunk that kills its worker every time is noticed), and the labels are stored
in one script that also says whether this was the file's last chunk. A device fault during
the work is raised as :class:`~emotions.errors.DeviceFaultError` (:mod:`worker.faults`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from emotions.constants import LOST_WORKER_STARTS
from emotions.errors import ModelMismatchError, PermanentError
from emotions.jobs import ALREADY, GIVE_UP, GO, REASSEMBLE, SKIP, JobStore, Stored
from emotions.redisfaults import unavailable
from worker.faults import as_device_fault, chunk_finished

if TYPE_CHECKING:
    from worker.inference import Engine
    from worker.lookahead import Ahead

log = logging.getLogger(__name__)

LABELS_DIFFER = -3  # store_part: another chunk of this job was labelled by another model
ASSEMBLE = 1  # store_part: this was the last chunk; the caller queues the assembly


def max_starts(max_retries: int) -> int:
    """How often a chunk may be begun: once, once per retry, and a few lost workers more."""
    return max_retries + 1 + LOST_WORKER_STARTS


def give_back_start(store: JobStore, job: str, index: int, name: str) -> None:
    """Take back the start BEGIN counted, so that a chunk handed back again and again while
    Redis refuses writes never reaches the start limit that fails its file. If Redis cannot
    take even that, the start stays counted (the limit still leaves several more)."""
    try:
        store.unbegin(job, index)
    except Exception as e:
        log.warning("file=%s chunk=%d start stays counted: redis unavailable (%s)", name, index, e)


def check_model(wanted: str, held: str) -> None:
    """Refuse a chunk queued for another model than the one this worker holds."""
    if wanted != held:
        raise ModelMismatchError(
            f"this chunk was queued for model {wanted} but this worker holds {held}; give "
            "producer and workers the same EMOTIONS_MODEL"
        )


def classify(
    engine: Engine,
    store: JobStore,
    *,
    job: str,
    index: int,
    texts: Sequence[str],
    name: str,
    max_retries: int,
    ahead: Ahead | None = None,
    token: str = "",
) -> Stored:
    """Label ``texts`` and store them as chunk ``index`` of ``job``.

    ``ahead`` lists the chunks expected next (:func:`worker.prefetch.next_chunks`): once this
    chunk's tokens are in hand, they are tokenized on the engine's tokenizer thread while this
    chunk's forwards are queued and run (:meth:`~worker.inference.Engine.submit`).

    ``token`` (the message's task id) lets a message that stored the file's last chunk, and
    comes again, learn that it must queue the assembly (:data:`~emotions.jobs.REASSEMBLE`).

    Returns the store's outcome (:data:`ASSEMBLE`: assemble the file, with what the store read
    for it), or the begin outcome when no work was done (:data:`~emotions.jobs.SKIP`,
    ``ALREADY``, ``GIVE_UP``; a message that comes again after storing the last chunk gets
    :data:`ASSEMBLE` with nothing read: the assembly reads it all).
    """
    limit = max_starts(max_retries)
    detail = {
        "error": f"chunk {index} ({len(texts)} comments) was begun {limit + 1} times without "
        "finishing: its worker died each time (out of memory? a GPU fault?)",
        "chunk": index,
        "file": name,
    }
    begun = store.begin(job, index, limit, detail, token)
    if begun == REASSEMBLE:
        log.warning(
            "file=%s chunk=%d stored before; the file is assembled (or queued) again", name, index
        )
        return Stored(ASSEMBLE, {}, {})
    if begun != GO:
        why = {
            SKIP: "job ended or expired",
            ALREADY: "already stored (a redelivered copy)",
            GIVE_UP: "begun too often; the file is failed",
        }[begun]
        log.log(
            logging.ERROR if begun == GIVE_UP else logging.INFO,
            "file=%s chunk=%d skipped: %s",
            name,
            index,
            why,
        )
        return Stored(begun, {}, {})
    started = time.perf_counter()
    try:
        pending = engine.submit(texts, ahead=ahead)
        indices = pending.indices()
    except Exception as e:
        fault = as_device_fault(e, engine.gpu_name)
        if fault is None:
            raise
        raise fault from e
    chunk_finished()
    try:
        stored = store.store_part_read(job, index, indices.tolist(), engine.labels, token)
    except Exception as e:
        if unavailable(e):  # handed back by the task: this start was not the chunk's fault
            give_back_start(store, job, index, name)
        raise
    if stored.outcome == LABELS_DIFFER:
        raise PermanentError(
            f"chunk {index} was labelled with other labels than the file's earlier chunks: two "
            "workers hold different models; give every worker the same EMOTIONS_MODEL"
        )
    seconds = time.perf_counter() - started
    log.info(
        "file=%s chunk=%d records=%d seconds=%.3f rate=%.1f/s ahead=%d nonfinite=%d%s",
        name,
        index,
        len(texts),
        seconds,
        len(texts) / max(seconds, 1e-9),
        pending.stats.tokenized_ahead,
        pending.stats.nonfinite,
        " (job ended; dropped)" if stored.outcome < 0 else "",
    )
    return stored
