"""What the task that stores a file's last chunk does next: assemble the file, or queue that.

A worker that also consumes the results queue (:func:`worker.lifecycle.serves_results`)
assembles the file in place. A queued assembly would come back to this very worker, and for
a small file (one chunk, a few comments) the second Celery task cost more than the rest of
the file: publishing it and its ``task-sent`` event, receiving it, its three task events, its
acknowledgement. A ``-Q inference`` worker, which may run where the output folder is not
mounted, always queues it for the results workers.

Assembling in place keeps what the queued assembly guarantees, because it is the same call
(:func:`worker.assembly.assemble`) under the same guard: this message took the job's
assembly guard when it stored the last chunk, so no other message assembles the file at the
same time, and should this worker die in the middle, the same message comes back and is told
to assemble again (:data:`emotions.jobs.REASSEMBLE`); the output is written atomically and the
job ends once. A failure of the assembly here never fails the chunk, whose labels are stored:
whatever it was (output folder not writable, Redis unavailable, a bug), the assembly is
queued as it would have been, and the assembly task's own retries and failure hook take it
from there. Outcomes that are not failures (input changed or gone: the job is superseded;
labels missing: the guard is released) are the assembly's own, and the same either way.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.exceptions import Reject

from emotions.errors import OutputWriteError
from emotions.jobs import JobStore, Stored
from emotions.messages import send_assembly
from emotions.redisfaults import unavailable
from emotions.settings import Settings
from worker.assembly import assemble

log = logging.getLogger(__name__)

QUEUED = "assembly queued"  # what the chunk task reports when the assembly went to the queue


def complete_file(
    celery: Celery,
    store: JobStore,
    settings: Settings,
    *,
    job: str,
    name: str,
    index: int,
    here: bool,
    stored: Stored | None = None,
) -> str:
    """Assemble the file whose last chunk was just stored (``here``), else queue it; what
    happened, in words (the output path, ``superseded: ...``, or :data:`QUEUED`).

    ``stored``: what storing the last chunk read for the assembly (the job's metadata, that
    chunk's labels), which then reads only the other chunks' labels.

    Raises only :class:`~celery.exceptions.Reject` (requeue): the assembly could not be
    queued because Redis is unavailable, so the chunk goes back and comes again.
    """
    if here:
        try:
            return assemble(store, settings, job, stored)
        except Exception as e:
            _not_here(e, name, index)
    queue_assembly(celery, job, name, index)
    return QUEUED


def _not_here(error: Exception, name: str, index: int) -> None:
    """Log why the file was not assembled in place; the caller queues its assembly."""
    if isinstance(error, OutputWriteError) or unavailable(error):
        log.warning(
            "file=%s chunk=%d not assembled here (%s); the assembly is queued", name, index, error
        )
    else:
        log.error(
            "file=%s chunk=%d assembly here failed; the assembly is queued",
            name,
            index,
            exc_info=error,
        )


def queue_assembly(celery: Celery, job: str, name: str, index: int) -> None:
    """Queue the file's assembly after its last chunk was stored, or hand the chunk back.

    Failing the chunk because Redis is unavailable would fail a good file. Handed back, the
    same message comes again, and the job store tells it (it holds the assembly guard) to
    complete the file then.
    """
    try:
        send_assembly(celery, job, name)
    except Exception as e:
        if not unavailable(e):
            raise
        log.warning("file=%s chunk=%d assembly not queued: redis unavailable (%s)", name, index, e)
        raise Reject(f"redis unavailable: {e}", requeue=True) from e
