"""Worker start-up: refuse early, load late.

The main process (``worker_init``) checks what is cheap, the device and the model config,
and stops the worker with a non-zero exit at once if either is wrong: a pool that keeps
restarting a child that cannot load is the worst way to say "no GPU". The model itself is
loaded in each pool child (``worker_process_init``), after the fork, because a CUDA context
must not be created in a parent that forks. A child that still fails to load stops the
whole worker instead of being restarted forever.

Stopping (:mod:`worker.shutdown`): the pool child leaves the worker's process group before
anything else, and once the worker is ready its SIGTERM/SIGINT handlers are replaced by a
bounded "finish the chunk in hand or hand it back".
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from celery import bootsteps
from celery.exceptions import WorkerTerminate
from celery.signals import (
    after_setup_logger,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from emotions.constants import INFERENCE_QUEUE, RESULTS_QUEUE
from emotions.settings import log_settings
from worker import shutdown
from worker.celery import app, get_settings
from worker.describe import RunsOn
from worker.prefetch import IN_PROCESS_POOLS, pool_name, prefetch_multiplier
from worker.shutdown import exit_now
from worker.watchdog import watch

if TYPE_CHECKING:
    from worker.model import ModelHolder

log = logging.getLogger(__name__)

_holder: ModelHolder | None = None  # this process's model, when it consumes inference
_serves_inference = True
_serves_results = False  # this worker consumes the results queue too (see serves_results)
_looks_ahead = False  # a threads pool: the chunks received behind the running one are visible
# Set by a pool child whose model load failed; shared memory created before the fork, so the
# main process can exit non-zero (a supervisor then sees a failure, not a clean stop).
_child_failed = multiprocessing.Value("b", 0)
_in_pool_child = False  # set in a prefork pool child once it starts
_worker: Any = None  # the WorkController of this worker (main process)


def holder() -> ModelHolder:
    """The process's model holder, created on first use (``-P solo``/``threads`` pools)."""
    global _holder
    if _holder is None:
        from worker.model import ModelHolder

        _holder = ModelHolder(get_settings())
    return _holder


def looks_ahead() -> bool:
    """Whether chunk tasks should name the chunks received behind them (:mod:`worker.prefetch`):
    only in a threads pool. A prefork child's copy of Celery's request sets is whatever the
    main process held when it was forked, not what it holds now."""
    return _looks_ahead


def serves_results() -> bool:
    """Whether this worker consumes the results queue as well as chunks (no ``-Q``, or
    ``-Q inference,results``): then the chunk that completes a file assembles it in place
    (:mod:`worker.completion`), since a queued assembly would come back to this very worker
    anyway. A ``-Q inference`` worker (a GPU host that may not see the output folder) queues
    it for the results workers.

    Read once at start from the queues the worker was given (``-Q``/``-X``), in the main
    process before the pool forks, so every pool child (restarted ones included) inherits it.
    """
    return _serves_results


def _consumes(consumer: Any, queue: str) -> bool:
    """Whether the worker was started to consume ``queue``: Celery selects ``-Q`` (and drops
    ``-X``) in ``app.amqp.queues`` before ``worker_init``; with neither, every queue."""
    queues = consumer.app.amqp.queues
    active = queues.consume_from or queues
    return queue in active


@worker_init.connect
def _preflight(sender: Any = None, **_: Any) -> None:
    """Main process, before the pool forks: validate settings, device and model config.

    A threads pool also reserves the next chunks while it runs one (:mod:`worker.prefetch`);
    a pool that never forks loads the model in :class:`LoadInProcess`.
    """
    global _serves_inference, _serves_results, _looks_ahead, _worker
    _worker = sender
    try:
        settings = get_settings()
        _serves_inference = _consumes(sender, INFERENCE_QUEUE)
        _serves_results = _consumes(sender, RESULTS_QUEUE)
        pool = pool_name(sender.pool_cls)
        if _serves_inference:
            from worker.model import preflight

            preflight(settings)
            sender.prefetch_multiplier = prefetch_multiplier(pool, sender.prefetch_multiplier)
            _looks_ahead = pool == "threads"
        if pool == "threads":
            # Celery enforces no time limit in a threads pool.
            watch(
                settings.task_time_limit,
                exit_process=functools.partial(shutdown.exit_handing_back, sender),
            )
    except Exception as e:
        log.critical("worker cannot start: %s", e)
        raise WorkerTerminate(1) from e


class LoadInProcess(bootsteps.StartStopStep):
    """A pool that runs tasks in the main process (``-P threads``/``solo``) never forks, so the
    model is loaded here: after logging is set up (``worker_init`` is too early for its lines),
    before the consumer takes the first message (a task would otherwise wait for the load,
    and a threads pool's time limit would count it). A failed load stops the worker with
    status 1, as Celery does for any step that cannot start."""

    requires = ("celery.worker.components:Pool",)

    def include_if(self, w: Any) -> bool:
        return _serves_inference and pool_name(w.pool_cls) in IN_PROCESS_POOLS

    def start(self, w: Any) -> None:
        limit = get_settings().model_load_timeout
        # What Celery's worker_proc_alive_timeout does for a prefork child that hangs loading.
        hung = threading.Timer(limit, _load_hung, (limit,))
        hung.daemon = True
        hung.start()
        try:
            holder().load()
            holder().warm_up()
        except Exception as e:
            log.critical("model load failed, stopping the worker: %s", e)
            raise
        finally:
            hung.cancel()


def _load_hung(limit: float) -> None:
    log.critical("model load took longer than EMOTIONS_MODEL_LOAD_TIMEOUT=%.0f s; exiting", limit)
    exit_now(1)


app.steps["worker"].add(LoadInProcess)
app.steps["worker"].add(RunsOn)


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    """Pool child: load and warm the model once; it then serves every chunk of this child."""
    global _in_pool_child
    shutdown.leave_process_group()  # first: a stop signal for the worker must not kill it
    _in_pool_child = True
    if not _serves_inference:
        return
    try:
        holder().load()
        holder().warm_up()
    except Exception as e:
        log.critical("model load failed in pool child %d, stopping the worker: %s", os.getpid(), e)
        stop_worker_from_child()
        os._exit(1)


def in_pool_child() -> bool:
    """Whether this process is a prefork pool child (whose death the pool sees and repairs)."""
    return _in_pool_child


def stop_worker_from_child() -> None:
    """Pool child: ask the worker's main process to stop, with exit status 1."""
    _child_failed.value = 1
    os.kill(os.getppid(), signal.SIGTERM)  # a stop (worker.shutdown); its exit status is then 1


def hand_back_unacked() -> None:
    """Main process: push every unacknowledged message (the chunks in hand and reserved) back
    onto its queue now, before the process leaves without Celery's shutdown."""
    consumer = getattr(_worker, "consumer", None)
    if consumer is not None and consumer.task_consumer is not None:
        shutdown.hand_back_before_exit(consumer)


@worker_shutdown.connect
def _exit_status(sender: Any = None, **_: Any) -> None:
    """Exit non-zero when the stop was caused by a child that could not load the model (a
    stop before the worker is ready is still Celery's own; after, see ``shutdown.install``)."""
    if _child_failed.value and sender is not None:
        sender.exitcode = 1


@after_setup_logger.connect
def _log_level(logger: Any = None, **_: Any) -> None:
    """``EMOTIONS_LOG_LEVEL`` applies unless ``-l`` was given: a flag wins over the
    environment, as in every process (without either, Celery's WARNING would hide the
    per-chunk lines)."""
    if logger is not None and not _loglevel_flag(sys.argv[1:]):
        logger.setLevel(get_settings().log_level)


def _loglevel_flag(argv: list[str]) -> bool:
    """True when ``-l``/``--loglevel`` is given (``-l X``, ``-lX``, ``--loglevel=X``)."""
    return any(
        a in ("-l", "--loglevel")
        or a.startswith("--loglevel=")
        or (a.startswith("-l") and not a.startswith("--"))
        for a in argv
    )


@worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    """Logged once logging is set up (``worker_init`` runs before it); the orderly stop is
    installed here because Celery installs its own signal handlers after ``worker_init``."""
    settings = get_settings()
    log_settings(settings, "worker")
    if sender is not None and sender.controller is not None:
        shutdown.install(
            sender.controller, settings.stop_grace_seconds, lambda: bool(_child_failed.value)
        )
    log.info(
        "worker ready (inference=%s, results=%s, looks ahead at received chunks=%s)",
        _serves_inference,
        _serves_results,
        _looks_ahead,
    )
