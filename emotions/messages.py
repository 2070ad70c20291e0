"""The two messages of the pipeline, defined once for the producer and the workers.

Tasks are sent by name so that the sender need not import them (the producer has no torch).
``argsrepr``/``shadow`` make Flower and the logs show the file and chunk instead of a wall
of comment text.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from emotions.constants import ASSEMBLE_TASK, CLASSIFY_TASK, INFERENCE_QUEUE, RESULTS_QUEUE


def send_chunk(
    app: Celery, job: str, index: int, records: list[list[Any]], model: str, name: str
) -> None:
    """Queue one chunk of ``[id, comment]`` records for inference."""
    app.send_task(
        CLASSIFY_TASK,
        args=[job, index, records, model, name],
        queue=INFERENCE_QUEUE,
        argsrepr=f"({name!r}, chunk {index}, {len(records)} comments)",
    )


def send_assembly(app: Celery, job: str, name: str) -> None:
    """Queue the assembly of a file whose chunks are all done (idempotent if sent twice)."""
    app.send_task(
        ASSEMBLE_TASK,
        args=[job, name],
        queue=RESULTS_QUEUE,
        shadow=f"{ASSEMBLE_TASK}[{name}]",
        argsrepr=repr(name),
    )
