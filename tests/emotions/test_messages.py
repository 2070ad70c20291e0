"""Messages as they sit in Redis: what a chunk carries, and finding a job's waiting messages."""

from __future__ import annotations

import base64
import json

import orjson
from kombu import serialization

from emotions.celeryconfig import celery_config, make_app
from emotions.constants import CHUNK_CONTENT_TYPE, INFERENCE_QUEUE, RESULTS_QUEUE
from emotions.messages import Texts, encode_json, send_assembly, send_chunk, waiting_for
from emotions.settings import load_settings
from harness.stack import RedisServer


def test_waiting_for_counts_only_the_jobs_own_messages(redis_server: RedisServer) -> None:
    app = make_app(load_settings(broker_url=redis_server.url))
    client = redis_server.client()
    try:
        send_chunk(app, "job-a", 0, ["x"], "hub:m@main", "a.json")
        send_chunk(app, "job-a", 1, ["y"], "hub:m@main", "a.json")
        send_chunk(app, "job-b", 0, ["z"], "hub:m@main", "b.json")
        send_assembly(app, "job-a", "a.json")
        send_chunk(app, "job-a", 2, ["a lone \ud800 surrogate"], "hub:m@main", "a.json")
        client.lpush(INFERENCE_QUEUE, b"not a kombu envelope")
        assert waiting_for(client, INFERENCE_QUEUE, "job-a") == 3  # escaped JSON counts too
        assert waiting_for(client, INFERENCE_QUEUE, "job-b") == 1
        assert waiting_for(client, INFERENCE_QUEUE, "job-c") == 0
        assert waiting_for(client, RESULTS_QUEUE, "job-a") == 1
        assert waiting_for(client, RESULTS_QUEUE, "job-b") == 0
    finally:
        client.close()
        app.close()


def test_a_chunk_message_carries_texts_never_ids(redis_server: RedisServer) -> None:
    app = make_app(load_settings(broker_url=redis_server.url))
    client = redis_server.client()
    try:
        send_chunk(app, "job-a", 3, ["first text", "second"], "hub:m@main", "a.json")
        envelope = orjson.loads(client.lindex(INFERENCE_QUEUE, 0))
        args = orjson.loads(base64.b64decode(envelope["body"]))[0]
        assert args == ["job-a", 3, ["first text", "second"], "hub:m@main", "a.json"]
        assert envelope["headers"]["argsrepr"] == "('a.json', chunk 3, 2 comments)"
    finally:
        client.close()
        app.close()


def test_texts_encoded_at_the_check_travel_as_plain_json(redis_server: RedisServer) -> None:
    """A chunk spooled by the check (Texts: its JSON array, encoded once) is embedded as is,
    under the chunk content type; the body is plain JSON, the same as a list sent directly,
    and a lone surrogate (which orjson refuses) travels escaped and comes back."""
    app = make_app(load_settings(broker_url=redis_server.url))
    client = redis_server.client()
    texts = ["plain", "ünïcödé 😂", 'quote " and \\ backslash', "lone \ud800 surrogate"]
    try:
        send_chunk(app, "job-a", 0, Texts(encode_json(texts), len(texts)), "m", "a.json")
        send_chunk(app, "job-a", 1, texts, "m", "a.json")
        for raw in client.lrange(INFERENCE_QUEUE, 0, -1):
            envelope = orjson.loads(raw)
            assert envelope["content-type"] == CHUNK_CONTENT_TYPE
            body = base64.b64decode(envelope["body"])
            args = json.loads(body)[0]  # any JSON reader
            assert args[2] == texts
            assert envelope["headers"]["argsrepr"].endswith(", 4 comments)")
            assert serialization.loads(body, CHUNK_CONTENT_TYPE, "utf-8")[0][2] == texts
    finally:
        client.close()
        app.close()


def test_a_worker_app_accepts_chunks_of_both_serializers() -> None:
    """Chunks queued by an earlier version (kombu's JSON) and by this one (orjson) are both
    accepted; pickle never is."""
    accept = set(celery_config(load_settings())["accept_content"])
    assert accept == {"json", CHUNK_CONTENT_TYPE}
