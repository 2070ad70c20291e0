"""Stopping a worker without losing, or stalling, the chunk in hand.

Supervisors stop a worker with SIGTERM and follow up with SIGKILL: honcho signals the whole
process group at once and kills it 5 s later; docker (and systemd with ``KillMode=mixed``)
signals the main process and kills after a grace period. Celery's own answer is a warm shutdown,
which waits for the running chunk however long it takes, while its pool child, hit by the
same group signal, dies mid-chunk (``WorkerLostError``). Either way a chunk can be left
unacknowledged in Redis when the SIGKILL lands, and then waits out the visibility timeout
before anyone runs it again.

Here instead:

- The pool child leaves its parent's process group (:func:`leave_process_group`), so a group
  signal reaches only the main process. The pool still stops the child by its pid, as always,
  and the kernel kills it if the main process dies (Celery sets a parent-death signal).
- The main process, on SIGTERM or SIGINT (:class:`OrderlyStop`), stops taking chunks and
  gives the chunk in hand ``EMOTIONS_STOP_GRACE_SECONDS`` to finish; a chunk that finishes is
  acknowledged as usual. One still running then (or at a second signal) is handed back: its
  unacknowledged message is pushed back onto its queue at once (kombu's Redis transport
  restores unacknowledged messages), the pool is closed and the child running it killed.
  Celery's cold shutdown follows, with nothing of value left to wait for.

The waiting happens in a timer of the worker's event loop, not in the signal handler, so the
loop goes on reading the pool's results and acknowledges a chunk that finishes in time, and
the handler itself touches no lock. (Celery's soft shutdown, ``worker_soft_shutdown_timeout``,
sleeps its whole timeout inside the signal handler even when the chunk finishes at once, and
cancels the child with a SIGTERM that a child deep in tokenizers or torch only acts on
seconds later.) SIGQUIT keeps Celery's meaning: a cold shutdown, now.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from celery.platforms import EX_FAILURE, EX_OK
from celery.worker import state
from kombu.common import ignore_errors

from emotions.constants import HAND_BACK_SETTLE_SECONDS, STOP_POLL_SECONDS

log = logging.getLogger(__name__)

_installed: OrderlyStop | None = None


def leave_process_group() -> None:
    """Pool child: a process group of its own, out of reach of signals meant for the worker.

    Terminal job control would stop a background group that writes to the terminal when
    ``stty tostop`` is set; the child only ever writes its log lines there, so it ignores that.
    """
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)


class OrderlyStop:
    """The main process's stop: the chunk in hand finishes within ``grace`` s or goes back.

    ``failed`` says whether the stop was asked for by a pool child that could not load the
    model, which makes the exit status 1.
    """

    def __init__(self, worker: Any, grace: float, failed: Callable[[], bool]) -> None:
        self.worker = worker
        self.grace = grace
        self.failed = failed
        self.deadline: float | None = None  # set by the first signal
        self.announced = False
        self.finished = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: record the request and nothing else (no locks, no I/O here)."""
        now = time.monotonic()
        # Asked again: hand the chunk back without waiting.
        self.deadline = now + self.grace if self.deadline is None else now

    def step(self) -> None:
        """Event-loop timer: stop consuming, wait for the chunk in hand, else hand it back.

        Runs after the loop's callbacks of this turn: a task whose end was read from the pool
        is already acknowledged when it is no longer among the active requests.
        """
        if self.deadline is None or self.finished:
            return
        consumer = self.worker.consumer
        if not self.announced:
            self.announced = True
            if state.active_requests:
                log.info("stopping: no new tasks; the one in hand has %.1f s to finish", self.grace)
            else:
                log.info("stopping: no task in hand")
            if consumer.task_consumer is not None:
                ignore_errors(consumer, consumer.task_consumer.cancel)
        if state.active_requests and time.monotonic() < self.deadline:
            return
        self.finished = True
        code = EX_FAILURE if self.failed() else EX_OK
        self.hand_back(consumer, code)
        # Celery's cold shutdown: nothing of value is left in the pool, and a pool child still
        # loading the model (a first start downloads it) dies at once instead of being waited
        # for, as a warm shutdown would.
        self.worker.exitcode = code
        state.should_terminate = code

    def hand_back(self, consumer: Any, code: int) -> None:
        """Put every unacknowledged task back on its queue, then stop the child running one:
        the task in hand, and any taken from the queue but not started (the child was busy
        or still loading the model).

        A threads pool cannot stop the thread running a task, and the interpreter would wait
        for it at exit; its chunk is back in the queue by then, so the process exits at once
        with ``code`` (a result the thread might still store is ignored by the job store,
        which keeps the first one).
        """
        running = [r for r in tuple(state.active_requests) if not r.acknowledged]
        waiting = len(state.reserved_requests) - len(state.active_requests)
        if running:
            log.warning("stopping: handing %d unfinished task(s) back to the queue", len(running))
        if waiting > 0:
            log.info("stopping: handing %d task(s) not started yet back to the queue", waiting)
        restore_unacked(consumer)  # first: even a SIGKILL right after leaves them queued
        # A closed pool starts no replacement child (with a model to load) for the one killed
        # below. SIGKILL because a child deep in tokenizers or torch would not run a Python
        # SIGTERM handler for seconds. Cancelled requests are neither acknowledged nor rejected.
        consumer.pool.close()
        for request in running:
            try:
                request.cancel(consumer.pool, signal="SIGKILL", emit_retry=False)
            except NotImplementedError:  # a threads pool: no job can be killed
                log.warning("stopping: exiting now, without the thread still running a task")
                exit_now(code)


def restore_unacked(consumer: Any) -> None:
    """Push every message this worker holds unacknowledged back onto its queue, now (kombu's
    Redis transport keeps them aside until then, or until the visibility timeout); if Redis
    cannot be reached, the broker redelivers them after the visibility timeout instead."""
    try:
        consumer.task_consumer.channel.qos.restore_unacked()
    except Exception as e:  # the broker is gone: it redelivers after the visibility timeout
        log.warning("could not hand tasks back now (%s)", e)


def hand_back_before_exit(consumer: Any) -> None:
    """Stop receiving, then hand back every message this worker holds, for a process about to
    leave from another thread than the consumer's (a ``-P threads``/``solo`` worker whose GPU
    broke, or whose task passed the time limit).

    The consumer keeps its prefetch full: each message handed back makes room for another,
    which it may record as delivered just after the hand back, and which would then wait out
    the visibility timeout. So it is cancelled first, and the hand back is repeated once after
    a moment, for a message it had already taken from the queue."""
    ignore_errors(consumer, consumer.task_consumer.cancel)
    restore_unacked(consumer)
    time.sleep(HAND_BACK_SETTLE_SECONDS)
    restore_unacked(consumer)


def exit_handing_back(worker: Any, code: int) -> NoReturn:
    """Hand the chunks this worker holds back to their queue, then leave at once with
    ``code``: for a threads worker whose task passed the hard time limit. Without the hand
    back, its reserved chunks would wait out the visibility timeout."""
    consumer = getattr(worker, "consumer", None)
    if consumer is not None and getattr(consumer, "task_consumer", None) is not None:
        held = len(state.reserved_requests)
        log.warning("exiting: handing %d task(s) back to the queue first", held)
        hand_back_before_exit(consumer)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Leave the process at once with ``code``, its log lines written: for a worker whose
    tasks run on threads, which neither Celery nor the interpreter's exit can stop."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(code)


def stopping() -> bool:
    """Whether this process was asked to stop. A threads pool has already queued the chunks
    it reserved, and would start them one after another while the stop waits for the chunk
    in hand; a chunk task that starts during a stop hands its chunk back instead."""
    return _installed is not None and _installed.deadline is not None


def install(worker: Any, grace: float, failed: Callable[[], bool]) -> OrderlyStop | None:
    """Replace Celery's SIGTERM/SIGINT handlers of the main process with :class:`OrderlyStop`.

    Needs the event loop of the prefork pool (``worker.hub``); other pools keep Celery's own
    handling. Installed once per process, after Celery installed its own handlers.
    """
    global _installed
    if _installed is None:
        hub = getattr(worker, "hub", None)
        if hub is None:
            log.info("no event loop: Celery's own shutdown applies")
            return None
        _installed = OrderlyStop(worker, grace, failed)
        hub.call_repeatedly(STOP_POLL_SECONDS, _installed.step)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _installed.on_signal)
    return _installed
