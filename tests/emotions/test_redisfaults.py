"""emotions.redisfaults: Redis refusing commands is "unavailable", never a bug of the command.

The replies are the server's own texts, parsed by the parser the clients use; the behaviour
of clients is shown against a real redis-server made to refuse writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.exceptions import BatchPublishError, OperationalError
from kombu.transport import redis as kombu_redis

from emotions.jobs import JobStore, connect
from emotions.redisfaults import (
    RedisRefused,
    RefusalParser,
    Transport,
    check_writes,
    is_refusal,
    refusal_code,
    unavailable,
)
from harness.stack import RedisServer

# Replies as redis-server 7 writes them (after the leading "-").
REFUSALS = {
    "OOM": "OOM command not allowed when used memory > 'maxmemory'.",
    "MISCONF": "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
    "persist to disk. Commands that may modify the data set are disabled",
    "READONLY": "READONLY You can't write against a read only replica.",
    "NOREPLICAS": "NOREPLICAS Not enough good replicas to write.",
    "LOADING": "LOADING Redis is loading the dataset in memory",
    "UNBLOCKED": "UNBLOCKED force unblock from blocking operation, instance state changed "
    "(master -> replica?)",
    "MASTERDOWN": "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set "
    "to 'no'.",
}
NOT_REFUSALS = [
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "ERR unknown command 'FOO', with args beginning with: ",
    "NOSCRIPT No matching script. Please use EVAL.",
    "ERR Error running script (call to f_x): @user_script:1: Script attempted to access "
    "nonexistent global variable 'OOM'",
    "NOPERM this user has no permissions to run the 'flushall' command",
]


@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_each_refusal_is_parsed_as_redis_refused(code: str) -> None:
    error = RefusalParser.parse_error(REFUSALS[code])
    assert isinstance(error, RedisRefused) and isinstance(error, redis.ConnectionError)
    assert refusal_code(error) == code
    assert str(error).startswith(code)  # the operator sees what Redis said
    # redis-py's own parser gives a ResponseError (or, for LOADING, its BusyLoadingError)
    # that the classification still recognises.
    native = redis.connection.DefaultParser.parse_error(REFUSALS[code])
    assert is_refusal(native) and unavailable(native)
    # Inside a Lua script the reply keeps its code and gains the script's name.
    scripted = RefusalParser.parse_error(REFUSALS[code] + " script: 06edfb58, on @user_script:1.")
    assert isinstance(scripted, RedisRefused)


@pytest.mark.parametrize("reply", NOT_REFUSALS)
def test_other_errors_stay_errors_of_the_command(reply: str) -> None:
    error = RefusalParser.parse_error(reply)
    assert not isinstance(error, redis.ConnectionError)
    assert not is_refusal(error) and not unavailable(error)


def test_unavailable_covers_lost_connections_and_failed_publishing() -> None:
    for error in (
        redis.ConnectionError("Connection refused"),
        redis.TimeoutError("Timeout reading"),
        OperationalError("Error 111 connecting"),
    ):
        assert unavailable(error) and not is_refusal(error)
    assert not unavailable(ValueError("OOM"))  # only Redis' errors are Redis' refusals


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[redis.Redis]:
    admin = redis_server.client()
    yield admin
    admin.config_set("min-replicas-to-write", 0)
    admin.config_set("maxmemory", 0)
    admin.close()


def test_a_quick_client_says_unavailable_within_seconds(
    redis_server: RedisServer, server: redis.Redis
) -> None:
    client = connect(redis_server.url, patient=False)
    check_writes(client)
    server.config_set("min-replicas-to-write", 1)
    began = time.monotonic()
    with pytest.raises(RedisRefused, match="NOREPLICAS"):
        check_writes(client)
    assert time.monotonic() - began < 5
    assert client.get("absent") is None  # reads still work: only a write tells
    client.close()


def test_a_patient_client_rides_out_a_refusal(
    redis_server: RedisServer, server: redis.Redis
) -> None:
    """The job store's writes wait while Redis is at maxmemory and go through once it has room
    again: a worker's stored labels are not lost to a full Redis."""
    store = JobStore(connect(redis_server.url), ttl=60)
    used = int(server.info("memory")["used_memory"])
    server.config_set("maxmemory", used - 64 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        server.set("probe", "x" * 1024)  # the server really refuses
    lifted = threading.Timer(1.5, server.config_set, ("maxmemory", 0))
    lifted.start()
    began = time.monotonic()
    store.create("j", name="a.json", total=1, records=1)
    lifted.join()
    assert time.monotonic() - began >= 1.0  # it waited for the room
    assert store.meta("j")["name"] == "a.json"
    store.r.close()


def received(url: str, transport: Any, server: redis.Redis) -> tuple[Any, float]:
    """Receive one message from a queue while Redis is at maxmemory for 1.5 s: the message,
    or the error, and how long receiving took."""
    with Connection(url, transport=transport) as conn:
        queue = conn.SimpleQueue("refusal-test")
        queue.put({"chunk": 1})
        used = int(server.info("memory")["used_memory"])
        server.config_set("maxmemory", used - 64 * 1024)  # BRPOP works; recording it does not
        lifted = threading.Timer(1.5, server.config_set, ("maxmemory", 0))
        lifted.start()
        began = time.monotonic()
        try:
            message: Any = queue.get(timeout=10)
            message.ack()
        except Exception as e:
            message = e
        lifted.join()
        took = time.monotonic() - began
        queue.close()
    return message, took


def test_a_received_message_is_kept_until_redis_records_it(
    redis_server: RedisServer, server: redis.Redis
) -> None:
    """kombu pops a message before it records it as unacknowledged; when that record is
    refused, kombu's own transport loses the message (it is in neither the queue nor the
    record). The project's transport keeps trying until Redis has room again."""
    lost, _ = received(redis_server.url, kombu_redis.Transport, server)
    assert isinstance(lost, redis.exceptions.OutOfMemoryError)
    assert server.llen("refusal-test") == 0 and server.hlen("unacked") == 0  # gone

    message, took = received(redis_server.url, Transport, server)
    assert message.payload == {"chunk": 1}
    assert took >= 1.0  # it waited for the record to be taken
    assert server.llen("refusal-test") == 0 and server.hlen("unacked") == 0  # and acked


def test_a_failed_publish_batch_is_unavailable_by_its_cause() -> None:
    """kombu reports a publish batch whose pipeline failed as BatchPublishError raised from
    the Redis error: a refusal or a lost connection there is Redis unavailable, anything
    else is not."""
    for cause, expected in [
        (RedisRefused("OOM command not allowed"), True),
        (redis.ConnectionError("gone"), True),
        (ValueError("a bug"), False),
    ]:
        try:
            try:
                raise cause
            except Exception as e:
                raise BatchPublishError("Redis publish batch failed; delivery is uncertain") from e
        except BatchPublishError as batch:
            assert unavailable(batch) is expected
    assert not unavailable(BatchPublishError("no cause"))


def handed_back(url: str, transport: Any, server: redis.Redis) -> tuple[int, Exception | None]:
    """Four messages received; the fourth is recorded as delivered only while the first three
    are being handed back (as a consumer's thread records a delivery while a task's thread
    hands messages back). How many messages are back in the queue afterwards, and the error."""
    with Connection(url, transport=transport) as conn:
        queue = conn.SimpleQueue("handback-test")
        for i in range(4):
            queue.put({"chunk": i})
        received = [queue.get(timeout=5) for _ in range(4)]
        qos = queue.consumer.channel.qos
        late = received[-1]
        del qos._delivered[late.delivery_tag]  # received, not recorded yet
        original = qos.restore_by_tag

        def restore_while_receiving(tag: str, client: Any = None) -> None:
            original(tag, client=client)
            if late.delivery_tag not in qos._delivered:
                qos.append(late, late.delivery_tag)  # what the consumer's thread does

        qos.restore_by_tag = restore_while_receiving
        error = None
        try:
            qos.restore_unacked()
        except Exception as e:
            error = e
        back = int(server.llen("handback-test"))
        queue.close()
    server.delete("handback-test", "unacked", "unacked_index")
    return back, error


def test_messages_are_handed_back_while_another_thread_receives(
    redis_server: RedisServer, server: redis.Redis
) -> None:
    """A -P threads worker hands its messages back from a task's thread while its consumer
    may record a new delivery. kombu's own transport fails ("mutated during iteration") after
    the first; the project's hands back every one, the late delivery included."""
    back, error = handed_back(redis_server.url, kombu_redis.Transport, server)
    assert isinstance(error, RuntimeError) and "mutated during iteration" in str(error)
    assert back == 1
    back, error = handed_back(redis_server.url, Transport, server)
    assert error is None and back == 4
