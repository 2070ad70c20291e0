"""The next chunk, seen early: what lets one worker keep its GPU busy between chunks.

A prefork child runs one task at a time and cannot see the next message (the main process
holds it), so between two chunks the GPU waits while the task returns, Celery acknowledges,
the next task arrives and its comments are tokenized. A worker whose pool runs tasks in its
own process (``-P threads``) holds its received messages in memory: the running chunk task
looks at the one waiting behind it and starts tokenizing it on the engine's tokenizer thread
while its own forwards run (:meth:`worker.inference.Engine.prefetch`). The next task then
finds its tokens ready and queues its first forward at once.

For there to be a chunk waiting, a threads worker serving inference reserves a few messages
more than it runs (:func:`prefetch_multiplier`). Looking ahead is only ever a hint: a wrong or
missing guess costs the tokenizing it would have saved, never a label.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from emotions.constants import CLASSIFY_TASK, LOOK_AHEAD_CHUNKS

IN_PROCESS_POOLS = frozenset({"threads", "solo"})  # pools whose tasks run in the main process


def pool_name(pool_cls: Any) -> str:
    """``threads``, ``solo``, ``prefork``...: the pool a worker was asked for, resolved as
    Celery resolves it (an alias from ``-P``, a ``module:Class`` path or a class) and named
    after its module (every Celery pool class is called ``TaskPool``)."""
    from celery.concurrency import get_implementation

    module = get_implementation(pool_cls).__module__.rpartition(".")[2]
    return "threads" if module == "thread" else module


def prefetch_multiplier(pool: str, current: int) -> int:
    """Messages reserved per concurrency slot: for a threads pool, enough that the next chunks
    are already here when one starts (:data:`~emotions.constants.LOOK_AHEAD_CHUNKS`);
    unchanged for the others (a prefork parent that reserved more would only hold chunks
    another worker could be running)."""
    return max(current, 1 + LOOK_AHEAD_CHUNKS) if pool == "threads" else current


def next_chunks(
    current_id: str | None, model: str, requests: Iterable[Any] | None = None
) -> list[list[str]]:
    """Texts of the chunk tasks for ``model`` this process has received but not started.

    ``requests`` defaults to Celery's reserved requests of this process (empty in a prefork
    child, which never holds a waiting message). They are read from another thread than the
    one that changes them, so a concurrent change simply means "no guess this time".
    """
    if requests is None:
        from celery.worker import state

        requests, active = state.reserved_requests, state.active_requests
    else:
        active = set()
    try:
        waiting = [r for r in list(requests) if r.id != current_id and r not in active]
    except RuntimeError:  # the set changed while copied
        return []
    return [r.args[2] for r in waiting if _is_chunk_for(r, model)]


def _is_chunk_for(request: Any, model: str) -> bool:
    args = request.args
    return (
        request.name == CLASSIFY_TASK
        and len(args) == 5
        and args[3] == model
        and isinstance(args[2], list)
    )
