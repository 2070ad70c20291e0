"""Messages as they sit in Redis: what a chunk carries, and finding a job's waiting messages."""

from __future__ import annotations

import base64

import orjson

from emotions.celeryconfig import make_app
from emotions.constants import INFERENCE_QUEUE, RESULTS_QUEUE
from emotions.messages import send_assembly, send_chunk, waiting_for
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
        client.lpush(INFERENCE_QUEUE, b"not a kombu envelope")
        assert waiting_for(client, INFERENCE_QUEUE, "job-a") == 2
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
