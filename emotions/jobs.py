"""Job state in Redis, shared by the producer (which creates and supervises jobs) and the
workers (which store chunk labels and assemble files).

A job is one input file's content under one model. Its keys:

- ``emotions:job:<id>`` (hash): the job's metadata (see :meth:`JobStore.create`) and ``state``;
- ``...:parts`` (hash): chunk index -> that chunk's label indexes (one byte per comment);
- ``...:starts`` (hash): chunk index -> how many times a worker began it;
- ``...:assemble`` (string): ``SET NX`` guard, so one assembly is done (in the worker that
  stored the last chunk) or queued per completion.

Why not a Celery chord: on the Redis backend a chord counts header results in a sorted set
that drops a duplicate only if its encoded result is byte-identical, so a redelivered chunk
can fire the callback early, and a lost key means it never fires. Here a chunk's labels are
``HSET`` under its index, so a chunk counts once however often it runs; the file is assembled
(or its assembly queued) when ``HLEN`` reaches the chunk count. Each step is one Lua script,
so no interleaving of two workers can skip or double it.

Stored parts hold label indexes only, never comment text: the assembly reads the text (and
the ids) from the input file again, after checking its digest. That keeps Redis memory at
about one byte per comment in flight instead of the rendered records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from emotions.constants import (
    DONE,
    FAILED,
    PARTS_PER_FETCH,
    QUEUED,
    SUPERSEDED,
    assemble_lock_key,
    job_key,
    parts_key,
    starts_key,
)
from emotions.errors import PermanentError
from emotions.redisfaults import CLIENT_OPTIONS

# Outcomes of BEGIN.
SKIP: Final = -1  # the job is no longer queued (ended, replaced or expired)
GIVE_UP: Final = -2  # the chunk was begun too often: the job is now failed
ALREADY: Final = 0  # this chunk's labels are already stored (a redelivered duplicate)
GO: Final = 1
# This very message stored the job's last chunk and took the assembly guard, and comes again:
# its worker died, or could not publish, before the file was surely assembled or its assembly
# queued. Do that again.
REASSEMBLE: Final = 2

# KEYS[1] job hash, KEYS[2] parts, KEYS[3] starts, KEYS[4] assembly guard.
# ARGV[1] chunk index, ARGV[2] most starts allowed, ARGV[3] TTL seconds,
# ARGV[4] failure detail (JSON) used if the chunk is begun once too often, ARGV[5] now,
# ARGV[6] the message's token (its task id; empty: none).
# Returns SKIP, GIVE_UP, ALREADY, GO or REASSEMBLE (above). Counting starts here, before any
# work, is what catches a chunk that kills its worker every time: that worker never gets to
# report anything. The guard holds the token of the message that took it (see _STORE), so a
# message that comes again after taking it is told to assemble the file (or queue that):
# without that, a worker dying between storing the last chunk and the file's assembly would
# leave the job waiting for the producer's stall supervision.
_BEGIN = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  if ARGV[6] ~= '' and redis.call('GET', KEYS[4]) == ARGV[6] then return 2 end
  return 0
end
local n = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
if n > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'detail', ARGV[4], 'finished', ARGV[5])
  redis.call('DEL', KEYS[2], KEYS[3])
  return -2
end
return 1
"""

# KEYS[1] job hash, KEYS[2] parts, KEYS[3] starts, KEYS[4] assembly guard.
# ARGV[1] chunk index, ARGV[2] the chunk's label indexes, ARGV[3] TTL seconds,
# ARGV[4] the worker's label names (JSON list, in index order), ARGV[5] the message's token
# (kept in the guard, for BEGIN).
# Returns -1: job not queued; -3: the labels differ from those stored by an earlier chunk of
# this job (two models in one file: refused); 0: stored; 1: stored and this caller must
# assemble the file or queue its assembly, returned as the array {1, HGETALL of the job}: the
# assembly that usually follows at once needs the job's metadata, and reading it here saves
# it a round trip. A duplicate of an already stored chunk of a complete job also returns 1
# once the guard has expired or been cleared by a heal: that is the lost-assembly case.
# A job whose record names a ``notify`` channel gets the chunk's index published there when
# first stored: the note that wakes its producer to refill its window (a hint, never relied
# on: the producer's polls stay the truth). A channel is not a key, so the script declares
# none; ``pcall``: a publish that fails (an ACL without the channel) must not fail the store
# after its writes, which a script does not undo.
_STORE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return -1 end
local labels = redis.call('HGET', KEYS[1], 'labels')
if not labels then
  redis.call('HSET', KEYS[1], 'labels', ARGV[4])
elseif labels ~= ARGV[4] then
  return -3
end
local new = redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
local notify = redis.call('HGET', KEYS[1], 'notify')
if notify and new == 1 then redis.pcall('PUBLISH', notify, ARGV[1]) end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if total == redis.call('HLEN', KEYS[2]) then
  if redis.call('SET', KEYS[4], ARGV[5], 'NX', 'EX', ARGV[3]) then
    local reply = redis.call('HGETALL', KEYS[1])
    table.insert(reply, 1, 1)
    return reply
  end
end
return 0
"""

# KEYS[1] job hash, KEYS[2] parts, KEYS[3] starts, KEYS[4] assembly guard.
# ARGV[1] new state, ARGV[2] detail (JSON), ARGV[3] now, ARGV[4] TTL of the ended record.
# Moves a queued job to a final state and frees its results at once; 0 if it had ended. The
# ended record keeps only what the producer reads after the end (name, total, records,
# model, state, detail, times): thousands of finished files cost a few hundred bytes each.
# KEYS[1] job hash, KEYS[2] starts. ARGV[1] chunk index.
# Takes back one counted start of a queued job's chunk (never below zero): a start that ended
# because Redis was unavailable was not the chunk's fault, and must not bring it nearer to
# failing its file.
_UNBEGIN = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') > 0 then
  return redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
end
return 0
"""

_END = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'detail', ARGV[2], 'finished', ARGV[3])
redis.call('HDEL', KEYS[1], 'labels', 'path', 'digest', 'output', 'chunk_size', 'chunk_bytes',
  'sent', 'notify')
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


# A Redis restart (seconds with the append-only file) must not fail a chunk whose labels are
# already computed: a worker's calls retry with back-off for about three minutes.
_PATIENT_RETRY = Retry(ExponentialBackoff(cap=5.0, base=0.2), retries=40)
# The producer and ``status`` must say "Redis is down" within seconds and stay stoppable.
_QUICK_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.1), retries=2)
_QUICK_TIMEOUT: Final = 3.0


def connect(url: str, *, patient: bool = True) -> redis.Redis:
    """A Redis client; ``patient`` ones ride out a restart (or Redis refusing writes for a
    while), others fail within seconds.

    Names of input files need not be UTF-8 on Linux: they travel as Python's surrogate
    escapes and come back as the same name.
    """
    brief: dict[str, Any] = (
        {}
        if patient
        else {"socket_connect_timeout": _QUICK_TIMEOUT, "socket_timeout": _QUICK_TIMEOUT}
    )
    return redis.Redis.from_url(
        url,
        retry=_PATIENT_RETRY if patient else _QUICK_RETRY,
        # A refusal (OOM, MISCONF, READONLY, NOREPLICAS, LOADING) arrives as RedisRefused,
        # a ConnectionError: retried like a restart, never taken for a bug of the command.
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=10,
        encoding_errors="surrogateescape",
        **CLIENT_OPTIONS,
        **brief,
    )


def encode_labels(indices: Sequence[int]) -> bytes:
    """A chunk's label indexes, one byte each (GoEmotions has 28 labels)."""
    try:
        return bytes(indices)
    except ValueError as e:
        raise PermanentError("a model with more than 256 labels is not supported") from e


def decode_labels(payload: bytes) -> list[int]:
    """The label indexes stored by :func:`encode_labels`."""
    return list(payload)


def decode_meta(raw: dict[bytes, bytes]) -> dict[str, str]:
    """A job's metadata hash as read from Redis, decoded (file names may not be UTF-8)."""
    return {k.decode(): v.decode("utf-8", "surrogateescape") for k, v in raw.items()}


class Stored(NamedTuple):
    """What storing a chunk's labels gave: the outcome of :meth:`JobStore.store_part`, and,
    when it is 1 (assemble), what the assembly would otherwise read again: the job's metadata
    as :meth:`JobStore.meta` gives it, read in the same script, and the chunk just stored
    (index -> its encoded labels, for :meth:`JobStore.parts`). Both empty otherwise."""

    outcome: int
    meta: dict[str, str]
    known: dict[int, bytes]


class JobStore:
    """Redis-backed state of every job."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.r = client
        self.ttl = ttl
        self._begin = client.register_script(_BEGIN)
        self._store = client.register_script(_STORE)
        self._end_script = client.register_script(_END)
        self._unbegin = client.register_script(_UNBEGIN)

    def create(self, job: str, **fields: str | int | bytes) -> None:
        """Start a job in state ``queued`` with its metadata.

        The producer gives: ``name`` (input file name), ``path`` (where the assembly reads it
        again), ``output`` (the absolute output path: the results worker writes exactly
        there, whatever its own output folder), ``digest`` (SHA-256 of the content), ``model``
        (canonical model identity), ``chunk_size``, ``chunk_bytes``, ``total`` (chunk count),
        ``records``, and ``notify``: the channel on which a worker publishes each chunk's index
        once stored (optional: without it nothing is published).
        """
        self.creating(job, **fields).execute()

    def creating(self, job: str, **fields: str | int | bytes) -> Any:
        """The writes of :meth:`create` queued on a transaction, not yet executed: the caller
        adds its own writes (the producer its ledger entry) and executes it, so a new file
        costs one round trip, and the job and its entry are written together."""
        key = job_key(job)
        pipe = self.r.pipeline()
        mapping: dict[Any, Any] = {**fields, "state": QUEUED, "sent": 0, "created": _now()}
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.ttl)
        return pipe

    def meta(self, job: str) -> dict[str, str]:
        """The job's metadata hash, decoded; empty when the job is unknown or expired."""
        return decode_meta(self.r.hgetall(job_key(job)))  # type: ignore[arg-type]

    @staticmethod
    def queue_read_meta(pipe: Any, job: str) -> None:
        """Add :meth:`meta`'s read to ``pipe`` (decode its reply with :func:`decode_meta`)."""
        pipe.hgetall(job_key(job))

    def begin(
        self, job: str, index: int, max_starts: int, detail: dict[str, Any], token: str = ""
    ) -> int:
        """Count a start of chunk ``index``: :data:`GO`, :data:`ALREADY`, :data:`SKIP`,
        :data:`GIVE_UP` (begun more than ``max_starts`` times: the job is failed with
        ``detail``) or :data:`REASSEMBLE` (``token``, the message's task id, stored the last
        chunk before and the assembly may not have been queued)."""
        keys = [job_key(job), parts_key(job), starts_key(job), assemble_lock_key(job)]
        args: list[int | bytes | str] = [
            index,
            max_starts,
            self.ttl,
            orjson.dumps(detail),
            _now(),
            token,
        ]
        return int(self._begin(keys=keys, args=args))

    def store_part(
        self, job: str, index: int, indices: Sequence[int], labels: list[str], token: str = ""
    ) -> int:
        """Store one chunk's labels: -3 other labels, -1 job inactive, 0 stored, 1 assemble
        (the assembly guard then holds ``token``)."""
        return self.store_part_read(job, index, indices, labels, token).outcome

    def store_part_read(
        self, job: str, index: int, indices: Sequence[int], labels: list[str], token: str = ""
    ) -> Stored:
        """:meth:`store_part`, and with outcome 1 what the assembly would read next (the job's
        metadata, this chunk's labels), in the same round trip (:class:`Stored`)."""
        keys = [job_key(job), parts_key(job), starts_key(job), assemble_lock_key(job)]
        part = encode_labels(indices)
        args: list[int | bytes | str] = [index, part, self.ttl, orjson.dumps(labels), token or "1"]
        reply = self._store(keys=keys, args=args)
        if not isinstance(reply, list):
            return Stored(int(reply), {}, {})
        fields = reply[1:]
        meta = decode_meta(dict(zip(fields[::2], fields[1::2], strict=True)))
        return Stored(int(reply[0]), meta, {index: part})

    def rename(self, job: str, name: str, path: bytes, output: str) -> None:
        """Point a job at its input's new name, path and output (renamed in flight)."""
        self.r.hset(job_key(job), mapping={"name": name, "path": path, "output": output})

    def mark_sent(self, job: str, sent: int) -> None:
        """Record how many chunks the producer has queued so far (it resumes from there)."""
        pipe = self.r.pipeline()
        self.queue_sent(pipe, job, sent)
        pipe.execute()

    def queue_sent(self, pipe: Any, job: str, sent: int) -> None:
        """:meth:`mark_sent` on ``pipe``: one feed records every job it fed in one round trip."""
        pipe.hset(job_key(job), "sent", sent)
        pipe.expire(job_key(job), self.ttl)

    def stored(self, job: str) -> set[int]:
        """Indexes of the chunks whose labels are stored."""
        return {int(k) for k in self.r.hkeys(parts_key(job))}

    def progress(self, job: str) -> tuple[int, int | None]:
        """(chunks done, chunk count or None when the job is unknown)."""
        pipe = self.r.pipeline()
        pipe.hlen(parts_key(job))
        pipe.hget(job_key(job), "total")
        done, total = pipe.execute()
        return int(done), int(total) if total is not None else None

    @staticmethod
    def queue_meta(pipe: Any, job: str) -> None:
        """Add to ``pipe`` the two reads a supervisor needs per job: state, chunks stored."""
        pipe.hget(job_key(job), "state")
        pipe.hlen(parts_key(job))

    def touch(self, job: str) -> None:
        """Restart the TTL of a job's keys: a job waiting in a long backlog must not expire."""
        pipe = self.r.pipeline()
        for key in (job_key(job), parts_key(job), starts_key(job)):
            pipe.expire(key, self.ttl)
        pipe.execute()

    def parts(
        self, job: str, total: int, known: Mapping[int, bytes] | None = None
    ) -> Iterator[bytes | None]:
        """Each chunk's stored labels in chunk order, fetched :data:`PARTS_PER_FETCH` at a
        time (one round trip each, bounded memory); those in ``known`` (labels this process
        has just stored) without a round trip."""
        key = parts_key(job)
        known = known or {}
        for start in range(0, total, PARTS_PER_FETCH):
            indexes = range(start, min(start + PARTS_PER_FETCH, total))
            missing = [str(i) for i in indexes if i not in known]
            fetched = iter(self.r.hmget(key, missing) if missing else [])
            for index in indexes:
                yield known[index] if index in known else next(fetched)  # type: ignore[misc]

    def unbegin(self, job: str, index: int) -> None:
        """Take back one counted start of chunk ``index`` (see :meth:`begin`): the chunk is
        handed back because Redis was unavailable, which is not the chunk's fault."""
        self._unbegin(keys=[job_key(job), starts_key(job)], args=[index])

    def release_assembly(self, job: str) -> None:
        """Clear the assembly guard so that a heal may queue the assembly again."""
        self.r.delete(assemble_lock_key(job))

    def claim_assembly(self, job: str) -> bool:
        """Take the assembly guard (a heal re-queues the assembly only if it gets it)."""
        return bool(self.r.set(assemble_lock_key(job), "1", nx=True, ex=self.ttl))

    def fail(self, job: str, error: dict[str, Any]) -> bool:
        """Mark a queued job failed with a JSON report; False if it had already ended."""
        return self._end(job, FAILED, error)

    def supersede(self, job: str, reason: str = "the file was replaced by newer content") -> bool:
        """End a job whose file changed: its remaining chunks are skipped, never written."""
        return self._end(job, SUPERSEDED, {"error": reason})

    def finish(self, job: str, output: str) -> bool:
        """Mark the job done and free its labels (they live on in the output file)."""
        return self._end(job, DONE, {"output": output})

    def _end(self, job: str, state: str, detail: dict[str, Any]) -> bool:
        keys = [job_key(job), parts_key(job), starts_key(job), assemble_lock_key(job)]
        args: list[str | bytes | int] = [state, orjson.dumps(detail), _now(), self.ttl]
        return bool(self._end_script(keys=keys, args=args))


def _now() -> str:
    return f"{time.time():.3f}"
