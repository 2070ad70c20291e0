"""Redis refusing writes is Redis being unavailable: one classification for every process.

A Redis server that is up can still refuse every write for a while: at ``maxmemory`` with
``noeviction`` (``OOM command not allowed``), with its disk full under AOF or a failed
snapshot (``MISCONF``), after a failover turned it into a replica (``READONLY``), without
enough replicas (``NOREPLICAS``, ``min-replicas-to-write``), while a replica is cut off from
its master (``MASTERDOWN``), or while it loads its data (``LOADING``). redis-py reports these
as ``ResponseError`` replies, which kombu, Celery and redis-py's own retries all treat as a
bug of the command: kombu's transport lets them out of the worker's event loop (the worker's
main process exits, "Unrecoverable error"), redis-py does not retry them, and the producer
would blame the file it was reading.

So the reply is turned into a connection error where it is parsed: clients built with
:data:`CLIENT_OPTIONS` (the job store, the producer, ``status``) and the Celery broker
transport registered here for ``redis://`` URLs (:class:`Transport`) raise
:class:`RedisRefused`, a ``redis.ConnectionError``. The connection is dropped and the
command retried by redis-py's retry, kombu's ``ensure`` and Celery's reconnect, exactly as
for a Redis restart, and nothing else in the project needs to know. A refused command had no
effect (the server refuses it before running it; a refused transaction runs nothing), so
retrying it is safe. :func:`unavailable` classifies any error the same way for code that
meets errors from other clients.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import redis
from kombu.exceptions import BatchPublishError, OperationalError
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis._parsers.resp3 import _RESP3Parser

from emotions.constants import (
    PROBE_KEY,
    PROBE_TTL_SECONDS,
    REFUSAL_PATIENCE_SECONDS,
    REFUSAL_RETRY_MAX_SECONDS,
)

log = logging.getLogger(__name__)

# Error codes of replies that say "not now" rather than "never": the server is up but
# refuses writes (or any command, while loading) until an operator or time fixes it.
# UNBLOCKED is what a blocked BRPOP gets when a failover turns its master into a replica.
REFUSAL_CODES: Final = frozenset(
    {"OOM", "MISCONF", "READONLY", "NOREPLICAS", "LOADING", "MASTERDOWN", "UNBLOCKED"}
)
# redis-py's own classes for some of those replies (the others arrive as ResponseError).
_REFUSAL_TYPES: Final = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.MasterDownError,
)


class RedisRefused(redis.ConnectionError):
    """Redis is up but refuses commands for now (see :data:`REFUSAL_CODES`): it is
    unavailable, and every caller waits and retries as for a lost connection."""


# Everything that means "Redis cannot be used right now": our clients, and kombu publishing.
UNAVAILABLE: Final = (redis.ConnectionError, redis.TimeoutError, OperationalError)


def refusal_code(error: BaseException) -> str | None:
    """The refusal code of a Redis error reply (``"OOM"``, ``"MISCONF"``, ...), else None."""
    if isinstance(error, RedisRefused):
        return getattr(error, "status_code", None) or "REFUSED"
    if not isinstance(error, redis.ResponseError | redis.ConnectionError):
        return None
    code = getattr(error, "status_code", None)
    if code in REFUSAL_CODES:
        return str(code)
    if isinstance(error, _REFUSAL_TYPES):
        return type(error).__name__
    # A refusal raised by a command inside a Lua script, or from an older server, still
    # starts with its code.
    text = str(error).lstrip("-").split(" ", 1)[0]
    return text if text in REFUSAL_CODES else None


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is Redis refusing a command for now (not a bug of the command)."""
    return refusal_code(error) is not None


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` means Redis cannot be used right now: a lost connection, a timeout,
    kombu failing to publish, or a refusal, however the client reported it (kombu reports a
    publish batch that failed as :class:`~kombu.exceptions.BatchPublishError`, caused by the
    Redis error)."""
    if isinstance(error, BatchPublishError) and error.__cause__ is not None:
        return unavailable(error.__cause__)
    return isinstance(error, UNAVAILABLE) or is_refusal(error)


def check_writes(client: redis.Redis) -> None:
    """Raise :class:`RedisRefused` (or a connection error) unless Redis takes a write now.

    Reads still work while Redis refuses writes, so a client that only reads would call such
    a server healthy while every worker and producer waits.
    """
    client.set(PROBE_KEY, "1", ex=PROBE_TTL_SECONDS)


class RefusalParser(_RESP3Parser):
    """redis-py's reply parser, except that a refusal becomes :class:`RedisRefused`.

    The parser raises a connection error at once (the connection is dropped, so no reply of
    a pipeline is left unread) where it would return a ``ResponseError`` to the caller.
    RESP3's parser reads RESP2 replies too, so this serves either protocol.
    """

    @classmethod
    def parse_error(cls, response: str) -> Any:
        error = super().parse_error(response)
        code = refusal_code(error)
        if code is None or isinstance(error, RedisRefused):
            return error
        refused = RedisRefused(f"{code} {error}" if code not in str(error) else str(error))
        refused.status_code = code
        return refused


# Connection options that make a redis-py client report refusals as RedisRefused.
CLIENT_OPTIONS: Final[dict[str, Any]] = {"parser_class": RefusalParser}


class QoS(kombu_redis.QoS):
    """kombu's acknowledgement emulation, patient with a refused ``unacked`` write, and able
    to hand messages back from another thread.

    A message is popped from its queue (BRPOP) before it is recorded as unacknowledged; if
    that record is refused, the message exists only in this process. Giving up at once would
    lose it (the producer's supervisor would send the chunk again, one stall period later), so
    the record is retried for up to :data:`REFUSAL_PATIENCE_SECONDS` before the error goes on
    to Celery's reconnect.

    A ``-P threads`` worker hands its messages back (:meth:`restore_unacked`) from a task's
    thread while the consumer's thread may still record a new delivery: kombu's loop over the
    live dict of deliveries then fails ("mutated during iteration") and hands back nothing.
    """

    def restore_unacked(self, client: Any = None) -> None:
        """Push every delivered, unacknowledged message back onto its queue: kombu's, over
        snapshots of the deliveries, until none is left (a delivery recorded meanwhile is
        handed back too)."""
        with self.channel.conn_or_acquire(client) as conn:
            for _ in range(RESTORE_ROUNDS):
                tags = list(self._delivered)  # one C call: atomic under the GIL
                if not tags:
                    return
                for tag in tags:
                    self.restore_by_tag(tag, client=conn)
                    self._delivered.pop(tag, None)

    def append(self, message: Any, delivery_tag: str) -> None:
        deadline = time.monotonic() + REFUSAL_PATIENCE_SECONDS
        wait = 0.1
        while True:
            try:
                super().append(message, delivery_tag)
                return
            except RedisRefused as e:
                if time.monotonic() + wait > deadline:
                    raise
                log.warning(
                    "redis unavailable (%s): recording a received message as unacknowledged "
                    "again in %.1fs",
                    e,
                    wait,
                )
                time.sleep(wait)
                wait = min(wait * 2, REFUSAL_RETRY_MAX_SECONDS)


# Snapshots restore_unacked takes before it gives up on deliveries that keep coming (a
# consumer still receiving); those left wait out the visibility timeout.
RESTORE_ROUNDS: Final = 10


class Channel(kombu_redis.Channel):
    """kombu's Redis channel whose connections report refusals as :class:`RedisRefused`."""

    QoS = QoS

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = super()._connparams(asynchronous)
        params.update(CLIENT_OPTIONS)
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`: Redis refusing a command is a connection
    error (already among ``connection_errors``), so Celery reconnects instead of exiting.

    A connection counts as made only once Redis takes a write (:func:`check_writes`): kombu
    checks a new connection with a PING, which a Redis refusing writes answers, and the
    worker would then restart its consumer several times a second (each start writes),
    instead of waiting between tries as Celery does for a Redis it cannot reach.
    """

    Channel = Channel

    def establish_connection(self) -> Any:
        connection = super().establish_connection()
        channel = self._avail_channels[-1]
        try:
            check_writes(channel.client)
        except Exception:
            self._avail_channels.remove(channel)
            channel.close()
            raise
        return connection


TRANSPORT_PATH: Final = f"{__name__}:Transport"


def register_transport() -> None:
    """Make ``redis://`` and ``rediss://`` broker URLs use :class:`Transport`.

    By kombu's table of URL schemes rather than Celery's ``broker_transport``: a transport
    named there replaces the scheme, and kombu then no longer sees ``rediss`` (TLS).
    """
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = TRANSPORT_PATH
