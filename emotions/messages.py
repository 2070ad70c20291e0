"""The two messages of the pipeline, defined once for the producer and the workers.

Tasks are sent by name so that the sender need not import them (the producer has no torch).
A chunk carries comment texts only, never ids: kombu's JSON decoder rewrites objects shaped
like its type markers (``{"__type__": ..., "__value__": ...}``) and Python's ``json`` makes
floats of integers beyond 64 bits, so an id sent through a message could come back changed.
Ids stay in the input file, which the assembly reads again. ``argsrepr``/``shadow`` make
Flower and the logs show the file and chunk instead of a wall of comment text.

Chunk messages are serialized with orjson (:data:`CHUNK_CONTENT_TYPE`), not kombu's JSON: the
producer encodes a chunk's texts once, when it checks the file, and the message embeds those
bytes as they are (``orjson.Fragment``); encoding them again through Python's ``json`` cost
the producer more than parsing them. The body is still plain JSON (any JSON reader can read
it), and orjson's decoder has no type markers. Texts that orjson cannot encode (a lone
surrogate, which only Python's ``json`` accepts in its input) are encoded by ``json`` instead,
with escapes, and read back by it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from celery import Celery
from kombu import serialization

from emotions.constants import (
    ASSEMBLE_TASK,
    CHUNK_CONTENT_TYPE,
    CHUNK_SERIALIZER,
    CLASSIFY_TASK,
    INFERENCE_QUEUE,
    RESULTS_QUEUE,
)
from emotions.files import display_name


@dataclass(frozen=True, slots=True)
class Texts:
    """A chunk's texts, already encoded as a JSON array (by :func:`encode_json`)."""

    json: bytes
    count: int


def encode_json(value: Any) -> bytes:
    """JSON by orjson, or by Python's ``json`` (escaped) where orjson refuses (a lone
    surrogate): the chunk serializer's encoder, and how the check encodes a chunk's texts."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode("ascii")


def decode_json(data: bytes | str) -> Any:
    """What :func:`encode_json` wrote, either way."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # escaped lone surrogates


def register_serializer() -> None:
    """Make the chunk serializer known to kombu (idempotent); every process's app calls it."""
    serialization.register(
        CHUNK_SERIALIZER,
        encode_json,
        decode_json,
        content_type=CHUNK_CONTENT_TYPE,
        content_encoding="utf-8",
    )


def chunk_call(
    job: str, index: int, texts: Texts | Sequence[str], model: str, name: str
) -> tuple[list[Any], str]:
    """The classify task's arguments for chunk ``index`` of ``job`` (under ``model``, an
    identity), and how Flower and the logs show them."""
    shown = display_name(name)
    if isinstance(texts, Texts):
        payload: Any = orjson.Fragment(texts.json)
        count = texts.count
    else:
        payload, count = list(texts), len(texts)
    return [job, index, payload, model, shown], f"({shown!r}, chunk {index}, {count} comments)"


def send_chunk(
    app: Celery,
    job: str,
    index: int,
    texts: Texts | Sequence[str],
    model: str,
    name: str,
    producer: Any = None,
) -> None:
    """Queue one chunk of comment texts by ``send_task`` (the producer's feed sends its chunks
    by :mod:`emotions.publish`, which makes the same message for less).

    ``producer``: a kombu producer to publish with; None: one from the app's pool."""
    args, argsrepr = chunk_call(job, index, texts, model, name)
    app.send_task(
        CLASSIFY_TASK,
        args=args,
        queue=INFERENCE_QUEUE,
        argsrepr=argsrepr,
        serializer=CHUNK_SERIALIZER,
        producer=producer,
        ignore_result=True,  # see send_assembly
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
        # Results live in the job store. Sent by name, a task is otherwise taken to want its
        # result, and Celery's Redis backend opens a result subscription in the sender.
        ignore_result=True,
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
            args = decode_json(base64.b64decode(envelope["body"]))[0]
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        count += bool(args) and args[0] == job
    return count
