"""The two messages of the pipeline, defined once for the producer and the workers.

Tasks are sent by name so that the sender need not import them (the producer has no torch).
A chunk carries comment texts only, never ids: kombu's JSON decoder rewrites objects shaped
like its type markers (``{"__type__": ..., "__value__": ...}``) and Python's ``json`` makes
floats of integers beyond 64 bits, so an id sent through a message could come back changed.
Ids stay in the input file, which the assembly reads again. ``argsrepr``/``shadow`` make
Flower and the logs show the file and chunk instead of a wall of comment text.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from celery import Celery

from emotions.constants import ASSEMBLE_TASK, CLASSIFY_TASK, INFERENCE_QUEUE, RESULTS_QUEUE
from emotions.files import display_name


def send_chunk(app: Celery, job: str, index: int, texts: list[str], model: str, name: str) -> None:
    """Queue one chunk of comment texts for inference under ``model`` (an identity)."""
    shown = display_name(name)
    app.send_task(
        CLASSIFY_TASK,
        args=[job, index, texts, model, shown],
        queue=INFERENCE_QUEUE,
        argsrepr=f"({shown!r}, chunk {index}, {len(texts)} comments)",
    )


def send_assembly(app: Celery, job: str, name: str) -> None:
    """Queue the assembly of a file whose chunks are all done (idempotent if sent twice)."""
    shown = display_name(name)
    app.send_task(
        ASSEMBLE_TASK,
        args=[job, shown],
        queue=RESULTS_QUEUE,
        shadow=f"{ASSEMBLE_TASK}[{shown}]",
        argsrepr=repr(shown),
    )


def waiting_for(client: Any, queue: str, job: str) -> int:
    """How many messages of ``job`` wait in ``queue`` (not yet taken by a worker).

    Reads the Redis transport's list for the queue: each entry is kombu's JSON envelope whose
    ``body`` is the base64 of ``[args, kwargs, embed]``, and every message of this pipeline
    has the job id as its first argument. Used only when a job looks stalled, to tell work
    that waits for a worker from work that was lost; an entry that does not parse is skipped.
    """
    count = 0
    for raw in client.lrange(queue, 0, -1):
        try:
            envelope = orjson.loads(raw)
            args = orjson.loads(base64.b64decode(envelope["body"]))[0]
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        count += bool(args) and args[0] == job
    return count
