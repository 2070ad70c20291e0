"""The producer when Redis refuses writes (real redis-server with ``min-replicas-to-write 1``
and no replica, or at ``maxmemory``): "redis unavailable ... retrying", the same as a lost
connection; a good file is never failed for it, and a bad file's failure stands without its
ledger entry."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
import redis

from emotions.constants import FAILED
from harness.stack import write_json
from producer.failed import FailedFolder
from producer.queue import ANNOUNCED
from tests.producer.rig import NAME, Rig, comments


@pytest.fixture
def refusing(rig: Rig) -> Iterator[redis.Redis]:
    """Redis refuses every write until the test ends."""
    admin = rig.client
    admin.config_set("min-replicas-to-write", 1)
    yield admin
    admin.config_set("min-replicas-to-write", 0)


def test_a_good_file_is_not_failed_while_redis_refuses_writes(
    rig: Rig, refusing: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    producer = rig.producer()
    path = write_json(rig.input / NAME, comments(5))
    caplog.set_level(logging.WARNING, logger="producer")
    producer.ready.push(path, ANNOUNCED)
    producer.step()
    assert path in producer.ready  # put back, taken again next turn
    assert path.exists() and list(rig.failed.iterdir()) == []
    said = [r.getMessage() for r in caplog.records if r.name == "producer"]
    assert any("redis unavailable" in m and "NOREPLICAS" in m for m in said), said
    refusing.config_set("min-replicas-to-write", 0)
    producer._next_poll = 0.0
    producer.step()  # Redis takes writes: the file is submitted
    assert path not in producer.ready
    assert producer.tracker.jobs and list(rig.failed.iterdir()) == []


def test_a_bad_file_fails_even_when_its_ledger_entry_is_refused(
    rig: Rig, refusing: redis.Redis
) -> None:
    failed = FailedFolder(rig.settings(), rig.ledger)
    path = rig.input / "bad.json"
    path.write_bytes(b"{not json")
    failed.fail(path, "not JSON")  # no exception: the failure is the file's own
    assert not path.exists() and (rig.failed / "bad.json").exists()
    report = orjson.loads((rig.failed / "bad.json.error.json").read_bytes())
    assert report["error"] == "not JSON" and failed.count == 1
    refusing.config_set("min-replicas-to-write", 0)
    assert rig.ledger.get("bad.json") is None  # refused, and said so in the log
    failed.fail(rig.input / "gone.json", "gone")
    entry = rig.ledger.get("gone.json")
    assert entry is not None and entry.state == FAILED
