"""A chunk whose retry cannot be published is handed back, not dropped.

Celery 5.7 turns a ``retry()`` whose message cannot be published into ``Reject(requeue=False)``:
the message is acknowledged and the chunk is gone, without the failure hook; an assembly that
cannot be queued after the last chunk would fail the file. Shown here with a
real Celery app on a real redis-server that refuses writes (``min-replicas-to-write``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from celery.exceptions import Reject, Retry

from emotions.celeryconfig import make_app
from emotions.jobs import connect
from emotions.settings import load_settings
from harness.stack import RedisServer
from worker.completion import queue_assembly
from worker.tasks import redis_unavailable, retry_or_hand_back


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Celery]:
    celery = make_app(load_settings(broker_url=redis_server.url, device="cpu"))
    yield celery
    celery.close()


def chunk_task(app: Celery) -> Any:
    @app.task(bind=True, name="emotions.test_chunk")
    def chunk(self: Any) -> None:  # never run: only its retry is published
        raise AssertionError

    chunk.push_request(id="task-1", retries=0, args=[], kwargs={}, called_directly=False)
    return chunk


def test_a_retry_that_cannot_be_published_is_handed_back(
    app: Celery, redis_server: RedisServer
) -> None:
    task = chunk_task(app)
    admin = redis_server.client()
    admin.config_set("min-replicas-to-write", 1)
    try:
        with pytest.raises(Reject) as dropped:  # Celery's own answer: drop the message
            task.retry(exc=RuntimeError("CUDA error"), countdown=0, max_retries=3)
        assert dropped.value.requeue is False
        with pytest.raises(Reject) as handed_back:
            retry_or_hand_back(task, RuntimeError("CUDA error"), 0.0, 3, "a.json", 2)
        assert handed_back.value.requeue is True
        assert "NOREPLICAS" in str(handed_back.value.reason)
    finally:
        admin.config_set("min-replicas-to-write", 0)
    assert admin.llen("inference") == 0
    with pytest.raises(Retry):  # Redis takes writes again: an ordinary retry
        retry_or_hand_back(task, RuntimeError("CUDA error"), 0.0, 3, "a.json", 2)
    assert admin.llen("inference") == 1  # the retry's message is queued
    admin.close()


def test_an_assembly_that_cannot_be_queued_hands_the_last_chunk_back(
    app: Celery, redis_server: RedisServer
) -> None:
    """Raising would fail the file (the chunk's failure hook); the chunk goes back instead,
    and its next run is told to queue the assembly (see the job store's REASSEMBLE)."""
    admin = redis_server.client()
    admin.config_set("min-replicas-to-write", 1)
    try:
        with pytest.raises(Reject) as handed_back:
            queue_assembly(app, "job-1", "a.json", 3)
        assert handed_back.value.requeue is True
    finally:
        admin.config_set("min-replicas-to-write", 0)
    queue_assembly(app, "job-1", "a.json", 3)
    assert admin.llen("results") == 1
    admin.close()


def test_redis_unavailable_hands_the_message_back_without_using_a_retry(
    redis_server: RedisServer,
) -> None:
    """A chunk whose job-store calls gave up on a refusing Redis is not the file's fault: it
    goes back to the queue; its retries (whose end fails the file) are kept for real faults."""
    admin = redis_server.client()
    client = connect(redis_server.url, patient=False)
    admin.config_set("min-replicas-to-write", 1)
    try:
        with pytest.raises(redis.ConnectionError) as refused:
            client.set("k", "v")
    finally:
        admin.config_set("min-replicas-to-write", 0)
        admin.close()
        client.close()
    with pytest.raises(Reject) as handed_back:
        redis_unavailable(refused.value, "a.json", 2)
    assert handed_back.value.requeue is True and "NOREPLICAS" in str(handed_back.value.reason)
    with pytest.raises(Reject):
        redis_unavailable(redis.ConnectionError("Connection refused"), "a.json")
    redis_unavailable(RuntimeError("CUDA error: illegal memory access"), "a.json")  # no raise
