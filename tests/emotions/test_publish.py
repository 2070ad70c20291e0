"""emotions.publish against a real redis-server: a batch's chunk message and its task-sent event
are the ones ``send_task`` makes (but for the task id and delivery tag), nothing of a block
that raises is sent, big batches go out part by part, and a refusal is reported as Redis
being unavailable."""

from __future__ import annotations

import base64
import signal
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kombu.utils.json import loads as kombu_loads

from emotions.celeryconfig import make_app
from emotions.constants import INFERENCE_QUEUE, PUBLISH_BATCH_COMMANDS
from emotions.messages import Texts, encode_json, send_chunk
from emotions.publish import publishing
from emotions.redisfaults import unavailable
from emotions.settings import load_settings
from harness.stack import RedisServer

TEXTS = ["plain", "ünïcödé 😂", 'quote " and \\ backslash', "lone \ud800 surrogate"]
UNIQUE = (
    "id",
    "root_id",
    "correlation_id",
    "delivery_tag",
    "uuid",
    "timestamp",
    "clock",
    "local_received",
)


def blank(value: Any) -> Any:
    """``value`` with every per-message identity or time field set to None, at any depth."""
    if isinstance(value, dict):
        return {k: None if k in UNIQUE else blank(v) for k, v in value.items()}
    if isinstance(value, list):
        return [blank(v) for v in value]
    return value


def decoded(raw: bytes) -> dict[str, Any]:
    """A kombu envelope as a worker reads it (kombu's ``loads``), its body decoded."""
    envelope: dict[str, Any] = kombu_loads(raw)
    envelope["body"] = kombu_loads(base64.b64decode(envelope["body"]))
    return envelope


@pytest.fixture
def app(redis_server: RedisServer) -> Iterator[Any]:
    app = make_app(load_settings(broker_url=redis_server.url))
    yield app
    app.close()


def events_of(pubsub: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` task-sent events published (kombu envelopes, decoded)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < count and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "pmessage":
            found.append(decoded(message["data"]))
    assert len(found) == count
    return found


def test_a_batch_sends_the_message_and_event_send_task_makes(
    app: Any, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev*")
    pubsub.get_message(timeout=1)  # the subscription's confirmation
    texts = Texts(encode_json(TEXTS), len(TEXTS))
    try:
        send_chunk(app, "job-a", 7, texts, "hub:m@main", "dir/a.json")
        with publishing(app) as batch:
            batch.send("job-a", 7, texts, "hub:m@main", "dir/a.json")
        by_celery, by_batch = (
            decoded(raw) for raw in reversed(client.lrange(INFERENCE_QUEUE, 0, -1))
        )
        sent_by_celery, sent_by_batch = events_of(pubsub, 2)
    finally:
        pubsub.close()
        client.close()
    assert by_batch["body"][0] == ["job-a", 7, TEXTS, "hub:m@main", "dir/a.json"]
    assert by_batch["headers"]["id"] != by_celery["headers"]["id"]
    for message in (by_batch, by_celery):
        assert message["properties"]["correlation_id"] == message["headers"]["id"]
        assert message["headers"]["root_id"] == message["headers"]["id"]
    assert blank(by_batch) == blank(by_celery)
    assert sent_by_batch["body"]["type"] == "task-sent"
    assert sent_by_batch["body"]["uuid"] == by_batch["headers"]["id"]
    assert (
        sent_by_batch["properties"]["delivery_info"]
        == sent_by_celery["properties"]["delivery_info"]
    )
    assert blank(sent_by_batch) == blank(sent_by_celery)


def test_nothing_of_a_block_that_raises_is_sent(app: Any, redis_server: RedisServer) -> None:
    client = redis_server.client()
    texts = Texts(encode_json(["x"]), 1)
    with pytest.raises(RuntimeError, match="mid-feed"), publishing(app) as batch:
        for index in range(3):
            batch.send("job-a", index, texts, "m", "a.json")
        raise RuntimeError("mid-feed")
    assert client.llen(INFERENCE_QUEUE) == 0
    with publishing(app) as batch:
        batch.send("job-a", 0, texts, "m", "a.json")
        assert client.llen(INFERENCE_QUEUE) == 0  # held until the block ends
    assert client.llen(INFERENCE_QUEUE) == 1
    client.close()


def test_a_big_batch_goes_out_part_by_part(app: Any, redis_server: RedisServer) -> None:
    client = redis_server.client()
    texts = Texts(encode_json(["x"]), 1)
    with publishing(app) as batch:
        for index in range(PUBLISH_BATCH_COMMANDS + 3):
            batch.send("job-a", index, texts, "m", "a.json")
        assert client.llen(INFERENCE_QUEUE) == PUBLISH_BATCH_COMMANDS
    indexes = [
        orjson.loads(base64.b64decode(orjson.loads(raw)["body"]))[0][1]
        for raw in client.lrange(INFERENCE_QUEUE, 0, -1)
    ]
    assert sorted(indexes) == list(range(PUBLISH_BATCH_COMMANDS + 3))
    client.close()


def test_a_refusal_is_redis_unavailable(app: Any, redis_server: RedisServer) -> None:
    """Redis up but refusing writes (maxmemory reached, noeviction): the block raises an error
    the producer's loop waits out (the feed then sends the block's chunks again)."""
    client = redis_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 50_000)
    texts = Texts(encode_json(["y" * 20_000]), 1)
    try:
        with pytest.raises(Exception) as caught, publishing(app) as batch:
            for index in range(20):
                batch.send("job-a", index, texts, "m", "a.json")
        assert unavailable(caught.value), repr(caught.value)
    finally:
        client.config_set("maxmemory", 0)
        client.close()


def test_redis_gone_is_redis_unavailable(redis_server: RedisServer) -> None:
    """Redis stopped before a feed: the block raises an error the loop waits out, within the
    producer's connection timeouts, instead of hanging."""
    app = make_app(load_settings(broker_url=redis_server.url))
    redis_server.stop()
    try:
        assert_unavailable_soon(app, 0)
    finally:
        app.close()


def assert_unavailable_soon(app: Any, index: int) -> None:
    """Publishing chunk ``index`` raises an error that says Redis is unavailable, in bounded
    time (the producer's connection and socket timeouts, with a generous margin)."""
    started = time.monotonic()
    with pytest.raises(Exception) as caught, publishing(app) as batch:
        batch.send("job-a", index, Texts(encode_json(["z"]), 1), "m", "a.json")
    assert unavailable(caught.value), repr(caught.value)
    assert time.monotonic() - started < 30


def test_redis_stalled_is_redis_unavailable(app: Any, redis_server: RedisServer) -> None:
    """Redis stopped (SIGSTOP) with the producer's connection open, so nothing closes it: the
    block raises an error the loop waits out within the producer's socket timeout, instead of
    hanging on a reply that never comes; and the next block, once Redis runs again, is sent."""
    texts = Texts(encode_json(["w"]), 1)
    with publishing(app) as batch:
        batch.send("job-a", 0, texts, "m", "a.json")  # the pool's connection is open now
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        assert_unavailable_soon(app, 1)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    with publishing(app) as batch:
        batch.send("job-a", 2, texts, "m", "a.json")
    client = redis_server.client()
    indexes = {
        orjson.loads(base64.b64decode(orjson.loads(raw)["body"]))[0][1]
        for raw in client.lrange(INFERENCE_QUEUE, 0, -1)
    }
    assert {0, 2} <= indexes
    client.close()
