"""The two tasks: classify a chunk (``inference`` queue) and assemble a file (``results``).

Thin on purpose: each calls a plain function (:func:`worker.chunk.classify`,
:func:`worker.assembly.assemble`) with this process's engine and job store, and decides only
what Celery must be told: retry, hand back, or fail. The retry policy is
:mod:`emotions.retries`.

Every way a task can fail records its outcome through Celery's own failure hook
(:meth:`ChunkTask.on_failure`), which Celery calls for any exception the task raises and, in
the worker's main process, for the hard time limit. Redis being unavailable (down, or
refusing writes) is never a failure: the message goes back to its queue
(:func:`redis_unavailable`), and so does one whose retry or assembly cannot be published
(Celery would acknowledge and drop it). An assembly that fails in the chunk task that
completes its file is queued instead (:mod:`worker.completion`), never a failure of that
chunk. A pool child that dies is requeued (``task_reject_on_worker_lost``) and counted by the
job store's start counter; anything lost beyond that is healed by the producer's supervisor.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Reject

from emotions.constants import ASSEMBLE_TASK, CLASSIFY_TASK, INFERENCE_QUEUE
from emotions.errors import (
    DeviceFaultError,
    ModelMismatchError,
    OutputWriteError,
    PermanentError,
)
from emotions.jobs import JobStore, connect
from emotions.modelid import model_identity
from emotions.redisfaults import unavailable
from emotions.retries import compute_backoff, may_retry
from worker import shutdown
from worker.assembly import assemble
from worker.celery import app, get_settings
from worker.chunk import ASSEMBLE, check_model, classify
from worker.completion import complete_file
from worker.faults import stop_for_device_fault
from worker.lifecycle import holder, looks_ahead, serves_results
from worker.prefetch import next_chunks

log = logging.getLogger(__name__)


@functools.cache
def store() -> JobStore:
    """This process's job store, on the result backend's Redis."""
    settings = get_settings()
    return JobStore(connect(settings.backend_url), settings.result_ttl)


@functools.cache
def own_model() -> str:
    """The identity of the model this worker holds (or would load)."""
    return model_identity(get_settings().model)


class ChunkTask(Task):
    """Records the failure of a chunk in its job, whatever path the failure took."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job, index, texts, _model, name = args
        error = {
            "error": f"{type(exc).__name__}: {exc}",
            "chunk": index,
            "file": name,
            "comments": len(texts),
            "retries": self.request.retries,
        }
        try:
            store().fail(job, error)
        except Exception as e:  # Redis gone too: the producer's supervisor ends the job
            log.error("file=%s chunk=%d cannot record its failure: %r", name, index, e)
        log.error("file=%s chunk=%d failed for good: %s", name, index, error["error"])


class AssemblyTask(Task):
    """Records the failure of an assembly in its job."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job, name = args
        try:
            store().fail(job, {"error": f"{type(exc).__name__}: {exc}", "file": name})
        except Exception as e:
            log.error("file=%s cannot record the assembly's failure: %r", name, e)


@app.task(name=CLASSIFY_TASK, bind=True, base=ChunkTask)
def classify_chunk(
    self: ChunkTask, job: str, index: int, texts: list[str], model: str, name: str
) -> str:
    """Label one chunk of comment texts and store the labels under its index; the chunk that
    completes its file then assembles it or queues that (:mod:`worker.completion`). The result
    (shown by Flower) says how many comments, and for that chunk what became of the file."""
    settings = get_settings()
    if shutdown.stopping():
        log.info("file=%s chunk=%d handed back: this worker is stopping", name, index)
        raise Reject("the worker is stopping", requeue=True)
    try:
        check_model(model, own_model())
        stored = classify(
            holder().engine,
            store(),
            job=job,
            index=index,
            texts=texts,
            name=name,
            max_retries=settings.max_retries,
            ahead=(lambda: next_chunks(self.request.id, own_model())) if looks_ahead() else None,
            token=self.request.id or "",
        )
    except ModelMismatchError as e:
        hand_back(self, e)
    except DeviceFaultError as e:  # the GPU broke: the chunk goes back, this process stops
        stop_for_device_fault(e, job=job, index=index, name=name)
    except PermanentError:
        raise
    except Exception as e:
        redis_unavailable(e, name, index)
        if not may_retry(self.request.retries, settings.max_retries):
            raise
        log.warning("file=%s chunk=%d retry=%d error=%r", name, index, self.request.retries, e)
        countdown = compute_backoff(self.request.retries, settings.retry_backoff_max)
        retry_or_hand_back(self, e, countdown, settings.max_retries, name, index)
    done = f"{len(texts)} comments"
    if stored.outcome != ASSEMBLE:
        return done
    here = serves_results()
    file = complete_file(
        app, store(), settings, job=job, name=name, index=index, here=here, stored=stored
    )
    return f"{done}; {file}"


def redis_unavailable(error: Exception, name: str, index: int | None = None) -> None:
    """Hand the message back if ``error`` says Redis is unavailable (down, or refusing writes).

    The job store's client has already waited minutes for it; the file is not at fault, so
    this uses up none of the chunk's retries (whose end fails the file), and a chunk whose
    labels could not be stored gives its counted start back (:func:`worker.chunk.classify`):
    however long Redis refuses writes, the chunk is tried again, never failed for it.
    """
    if not unavailable(error):
        return
    where = f"file={name}" + (f" chunk={index}" if index is not None else "")
    log.warning("%s goes back to the queue: redis unavailable (%s)", where, error)
    raise Reject(f"redis unavailable: {error}", requeue=True) from error


def retry_or_hand_back(
    task: Task,
    error: Exception,
    countdown: float,
    max_retries: int | None,
    name: str,
    index: int | None = None,
) -> NoReturn:
    """Retry the task; if the retry cannot be published, hand the message back instead.

    Celery turns a retry whose message cannot be published (Redis down or refusing writes)
    into ``Reject(requeue=False)``: the chunk (or assembly) would be acknowledged and dropped,
    without the failure hook. Requeued, it stays unacknowledged in Redis until it is pushed
    back to its queue (now, or once Redis takes writes again, or after the visibility
    timeout). ``max_retries`` None: the task's own limit.
    """
    try:
        raise task.retry(exc=error, countdown=countdown, max_retries=max_retries) from error
    except Reject as rejected:
        where = f"file={name}" + (f" chunk={index}" if index is not None else "")
        log.warning(
            "%s retry not queued (%s): the message goes back to the queue", where, rejected.reason
        )
        raise Reject(f"retry not queued: {rejected.reason}", requeue=True) from error


def hand_back(task: Task, error: ModelMismatchError) -> None:
    """Give the chunk back to the queue and stop taking chunks: this worker has another model.

    Failing the chunk would fail every file of a fleet because of one misconfigured worker;
    taking chunks and handing them back would spin. So the worker stops consuming the
    inference queue (other workers take the chunk) and says so at ERROR level.
    """
    log.error("%s; this worker stops taking chunks from the %r queue", error, INFERENCE_QUEUE)
    hostname = task.request.hostname
    if hostname:
        try:
            task.app.control.cancel_consumer(INFERENCE_QUEUE, destination=[hostname])
        except Exception as e:  # Redis unavailable: hand the chunk back all the same
            log.error("could not stop taking chunks (%r); the chunk goes back anyway", e)
    raise Reject(str(error), requeue=True)


@app.task(name=ASSEMBLE_TASK, bind=True, base=AssemblyTask, max_retries=None)
def assemble_file(self: AssemblyTask, job: str, name: str) -> str:
    """Write the file's output from the input and the stored labels, atomically, once."""
    settings = get_settings()
    try:
        return assemble(store(), settings, job)
    except Exception as e:
        redis_unavailable(e, name)
        if not isinstance(e, OutputWriteError):
            raise
        # Labels stay in Redis; retried while the job is queued (the producer's supervisor
        # fails it after a few stall periods without progress).
        log.error("file=%s cannot write output, will retry: %s", name, e)
        countdown = compute_backoff(self.request.retries, settings.retry_backoff_max)
        retry_or_hand_back(self, e, countdown, None, name)
