"""Chunk messages published in batches, a fraction of the Python per message of ``send_task``.

A chunk message carries about 40 KB of texts, and one producer must send thousands a second to
keep a fleet of GPUs busy. Through ``app.send_task`` each one cost this producer about 0.6 ms of
CPU, more than checking the 512 comments in it: Celery routes the task and merges its options,
kombu wraps the publish in a retry guard, binds and declares the queue again, and encodes the
message's envelope with Python's ``json`` (130 us for the base64 of 40 KB); then the
``task-sent`` event goes through the same path.

:class:`ChunkBatch` (from a :class:`Publisher`, made once per process) makes the very same
message from the same parts, by the libraries' own builders: Celery's protocol-2 message
(``app.amqp.create_task_message``, the call ``send_task`` makes), kombu's serializer registry,
the Redis channel's ``prepare_message`` and its envelope (base64 body, delivery tag and info),
and the Redis list kombu would push it onto. Only the envelope's final encoding is orjson's
instead of ``json`` (both write plain JSON; kombu decodes it with its ``loads`` as always), and
the ``LPUSH`` goes into this batch's own pipeline. The ``task-sent`` event is published by
Celery's own event dispatcher, through the kombu batch of the same producer. A test reads a
message and an event made each way from a real Redis and requires them equal but for the task
id and delivery tag, so a Celery or kombu upgrade that changes their shape fails there, not in
a worker.

Left out, as nothing in this system uses them for chunk messages: Celery's
``before_task_publish``/``after_task_publish`` signals and routing by ``task_routes``. A
transport other than Redis takes ``send_task``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import orjson
from celery import Celery
from kombu import serialization
from kombu.entity import maybe_delivery_mode
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.uuid import uuid

from emotions.constants import (
    CHUNK_SERIALIZER,
    CLASSIFY_TASK,
    INFERENCE_QUEUE,
    PUBLISH_BATCH_BYTES,
    PUBLISH_BATCH_COMMANDS,
)
from emotions.messages import Texts, chunk_call, send_chunk


class Publisher:
    """What every chunk message of one app shares, made once per process: building Celery's
    event dispatcher alone makes a kombu connection object, about 0.1 ms, which a producer
    feeding a small file per turn would otherwise pay per file."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.sent_events = bool(app.conf.task_send_sent_event)
        self.events = app.events.Dispatcher(enabled=False)
        queue = app.amqp.queues[INFERENCE_QUEUE]
        self.delivery_mode = maybe_delivery_mode(
            queue.exchange.delivery_mode or app.conf.task_default_delivery_mode
        )

    @contextmanager
    def batch(self) -> Iterator[ChunkBatch]:
        """A :class:`ChunkBatch` on a producer of the app's pool; everything is sent when the
        block ends without an error, and nothing more after one."""
        with self.app.producer_or_acquire() as producer, producer.batch(PUBLISH_BATCH_COMMANDS):
            channel = producer.channel
            if not isinstance(channel, RedisChannel):
                yield ChunkBatch(self, producer, None)
                return
            with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
                batch = ChunkBatch(self, producer, pipe)
                yield batch
                batch.flush()


class ChunkBatch:
    """Chunk messages sent within one ``with publisher.batch()`` block.

    Messages go to Redis when the block ends (the events after them), or earlier once
    :data:`PUBLISH_BATCH_COMMANDS` or :data:`PUBLISH_BATCH_BYTES` are buffered; an error
    leaves every message of the block uncertain (some may be queued), as with any publish
    that fails part-way: the caller sends them again, and a worker skips a chunk whose labels
    it finds stored.
    """

    def __init__(self, publisher: Publisher, producer: Any, pipe: Any | None) -> None:
        self.app = publisher.app
        self._publisher = publisher
        self._producer = producer
        self._pipe = pipe  # None: not a Redis channel; each message goes by send_task
        self._buffered = 0
        self._bytes = 0
        self._reply_to = self.app.thread_oid

    def send(self, job: str, index: int, texts: Texts, model: str, name: str) -> None:
        """Queue chunk ``index`` of ``job`` (its texts as encoded by the check)."""
        if self._pipe is None:
            send_chunk(self.app, job, index, texts, model, name, self._producer)
            return
        publisher = self._publisher
        args, argsrepr = chunk_call(job, index, texts, model, name)
        message = self.app.amqp.create_task_message(
            uuid(),
            CLASSIFY_TASK,
            args,
            None,
            reply_to=self._reply_to,
            create_sent_event=publisher.sent_events,
            argsrepr=argsrepr,
            ignore_result=True,
        )
        content_type, encoding, body = serialization.dumps(
            message.body, serializer=CHUNK_SERIALIZER
        )
        # send_task leaves its unused options (here argsrepr) among the properties too.
        properties = {
            **message.properties,
            "argsrepr": argsrepr,
            "delivery_mode": publisher.delivery_mode,
        }
        channel: RedisChannel = self._producer.channel
        envelope = channel.prepare_message(
            body, 0, content_type, encoding, message.headers, properties
        )
        channel._inplace_augment_message(envelope, "", INFERENCE_QUEUE)
        key = channel._q_for_pri(INFERENCE_QUEUE, channel._get_message_priority(envelope))
        data = orjson.dumps(envelope)
        self._pipe.lpush(key, data)
        self._buffered += 1
        self._bytes += len(data)
        if message.sent_event is not None:
            message.sent_event.update(
                queue=INFERENCE_QUEUE, exchange="", routing_key=INFERENCE_QUEUE
            )
            publisher.events.publish("task-sent", message.sent_event, self._producer, retry=False)
        if self._buffered >= PUBLISH_BATCH_COMMANDS or self._bytes >= PUBLISH_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send the messages buffered so far (their events follow with the kombu batch)."""
        if self._pipe is not None and self._buffered:
            self._buffered = self._bytes = 0
            self._pipe.execute()


def publishing(app: Celery) -> AbstractContextManager[ChunkBatch]:
    """One :meth:`Publisher.batch` of ``app``, for a caller that publishes once."""
    return Publisher(app).batch()
