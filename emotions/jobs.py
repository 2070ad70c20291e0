"""Job state in Redis, shared by the producer (which creates jobs) and the workers.

Why not a Celery chord: on the Redis backend a chord counts header results in a sorted set
that drops a duplicate only if its encoded result is byte-identical, so a redelivered chunk
can fire the callback early, and a lost key means it never fires. Here each chunk's result is
``HSET`` under its index and the index ``SADD``-ed, so a chunk counts once however often it
runs; the assembly is enqueued when ``SCARD`` reaches the chunk count, guarded by ``SET NX``.
Each step is one Lua script, so no interleaving of two workers can skip or double it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from emotions.constants import (
    DONE,
    FAILED,
    QUEUED,
    SUPERSEDED,
    assemble_lock_key,
    done_key,
    job_key,
    parts_key,
)

# Returns -1: job not active (failed/superseded/gone), 0: stored, 1: stored and the caller
# must enqueue the assembly. A duplicate execution of an already stored chunk of a complete
# job also returns 1: the lost-assembly case after a crash; assembling twice is harmless.
_STORE_PART = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local added = redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
local total = redis.call('HGET', KEYS[1], 'total')
if total and tonumber(total) == redis.call('SCARD', KEYS[3]) then
  if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[3]) or added == 0 then return 1 end
end
return 0
"""

# Records the chunk count once the producer has enqueued every chunk; 1 when all are done.
_SET_TOTAL = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return -1 end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'records', ARGV[2], 'submitted', '1')
if tonumber(ARGV[1]) == redis.call('SCARD', KEYS[2]) then
  if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) then return 1 end
end
return 0
"""

# Moves a queued job to a final state; 0 when it was no longer queued.
_TRANSITION = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'detail', ARGV[2], 'finished', ARGV[3])
return 1
"""


# A Redis restart (seconds with the append-only file) must not fail a chunk whose labels are
# already computed: every call retries with back-off for about three minutes.
_OUTAGE_RETRY = Retry(ExponentialBackoff(cap=5.0, base=0.2), retries=40)


def connect(url: str) -> redis.Redis:
    """A client that rides out a Redis restart instead of failing the caller."""
    return redis.Redis.from_url(
        url,
        retry=_OUTAGE_RETRY,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=10,
    )


class JobStore:
    """Redis-backed state of every job (one job = one input file under one model)."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.r = client
        self.ttl = ttl
        self._store = client.register_script(_STORE_PART)
        self._total = client.register_script(_SET_TOTAL)
        self._transition = client.register_script(_TRANSITION)

    def create(self, job: str, *, name: str, model: str, digest: str) -> None:
        """Start a job in state ``queued``; the chunk count comes later (:meth:`set_total`)."""
        key = job_key(job)
        pipe = self.r.pipeline()
        pipe.hset(
            key,
            mapping={
                "name": name,
                "model": model,
                "digest": digest,
                "state": QUEUED,
                "created": f"{time.time():.3f}",
            },
        )
        pipe.expire(key, self.ttl)
        pipe.execute()

    def set_total(self, job: str, total: int, records: int) -> int:
        """Record that all ``total`` chunks are enqueued; 1 means enqueue the assembly now."""
        keys = [job_key(job), done_key(job), assemble_lock_key(job)]
        return int(self._total(keys=keys, args=[total, records, self.ttl]))

    def store_part(self, job: str, index: int, payload: bytes) -> int:
        """Store one chunk's output records: -1 job inactive, 0 stored, 1 assemble now."""
        keys = [job_key(job), parts_key(job), done_key(job), assemble_lock_key(job)]
        return int(self._store(keys=keys, args=[index, payload, self.ttl]))

    def meta(self, job: str) -> dict[str, str]:
        """The job's metadata hash, decoded; empty when the job is unknown or expired."""
        raw: dict[bytes, bytes] = self.r.hgetall(job_key(job))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def progress(self, job: str) -> tuple[int, int | None]:
        """(chunks done, chunk count or None while the producer is still enqueueing)."""
        pipe = self.r.pipeline()
        pipe.scard(done_key(job))
        pipe.hget(job_key(job), "total")
        done, total = pipe.execute()
        return int(done), int(total) if total is not None else None

    def parts(self, job: str, total: int) -> Iterator[bytes | None]:
        """Each chunk's stored records in chunk order, fetched one at a time (bounded memory)."""
        key = parts_key(job)
        for index in range(total):
            yield self.r.hget(key, str(index))  # type: ignore[misc]

    def fail(self, job: str, error: dict[str, Any]) -> bool:
        """Mark a queued job failed with a JSON error report; False if it had already ended."""
        return self._end(job, FAILED, error)

    def supersede(self, job: str) -> bool:
        """Stop a job whose file was rewritten: its remaining chunks are skipped, never written."""
        ended = self._end(job, SUPERSEDED, {"error": "the file was replaced by newer content"})
        self._drop_results(job)
        return ended

    def finish(self, job: str, output: str) -> bool:
        """Mark the job done and free its chunk results (they live on in the output file)."""
        ended = self._end(job, DONE, {"output": output})
        self._drop_results(job)
        return ended

    def _end(self, job: str, state: str, detail: dict[str, Any]) -> bool:
        args: list[str | bytes] = [state, orjson.dumps(detail), f"{time.time():.3f}"]
        return bool(self._transition(keys=[job_key(job)], args=args))

    def _drop_results(self, job: str) -> None:
        self.r.delete(parts_key(job), done_key(job), assemble_lock_key(job))
