"""A chunk handed back because Redis was unavailable gives back the start it counted.

The job store counts every start of a chunk before any work, so that a chunk that kills its
worker every time fails its file. A start that ends because Redis refused to store the labels
is not the chunk's fault: however often it happens, the chunk must not reach that limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.null_worker import NullEngine
from emotions.constants import QUEUED, starts_key
from emotions.jobs import GO, JobStore, Stored, connect
from emotions.redisfaults import RedisRefused
from harness.stack import RedisServer
from worker.chunk import classify, max_starts

LABELS = [f"label{i}" for i in range(28)]
JOB = "job"


class RefusedStores(JobStore):
    """The real job store on a real Redis, except that storing a chunk's labels is refused
    (as at ``maxmemory``): the fault this module is about, injected at its one call."""

    def store_part_read(self, *args: Any, **kwargs: Any) -> Stored:
        error = RedisRefused("OOM command not allowed when used memory > 'maxmemory'.")
        error.status_code = "OOM"
        raise error


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RefusedStores]:
    client = connect(redis_server.url, patient=False)
    s = RefusedStores(client, ttl=600)
    s.create(JOB, name="a.json", total=1, records=2, chunk_size=512, chunk_bytes=1 << 18)
    yield s
    client.close()


def test_refused_stores_never_use_up_a_chunks_starts(store: RefusedStores) -> None:
    limit = max_starts(max_retries=3)
    for _ in range(limit * 3):
        with pytest.raises(RedisRefused):
            classify(
                NullEngine(LABELS),  # type: ignore[arg-type]
                store,
                job=JOB,
                index=0,
                texts=["one", "two"],
                name="a.json",
                max_retries=3,
            )
    assert store.r.hget(starts_key(JOB), "0") == b"0"
    assert store.meta(JOB)["state"] == QUEUED  # never failed for Redis' sake
    assert store.begin(JOB, 0, limit, {}) == GO
