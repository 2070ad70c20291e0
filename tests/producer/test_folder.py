"""producer.folder on a real redis-server: one producer per input folder (a second is refused
with a message naming the first, a crashed one's lock expires, a lost lock is noticed), and
the single ledger of an earlier version is adopted once."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import orjson
import pytest

from emotions.constants import (
    LEGACY_LEDGER_KEY,
    LEGACY_OUTPUTS_KEY,
    PRODUCER_LOCK_SECONDS,
    QUEUED,
)
from emotions.errors import FolderLockedError
from producer.folder import FolderLock, adopt_legacy
from producer.ledger import Ledger
from tests.producer.rig import Rig


def test_a_second_producer_on_the_same_folder_is_refused(rig: Rig) -> None:
    first = rig.producer()
    first.start()
    second = rig.producer()
    with pytest.raises(FolderLockedError, match="another producer already watches") as e:
        second.start()
    assert str(rig.input.resolve()) in str(e.value)
    assert f"{PRODUCER_LOCK_SECONDS} s" in str(e.value)
    # Another folder is another lock.
    other = rig.root / "other"
    other.mkdir()
    rig.producer(input_dir=other).start()
    # Once the first stops, the folder is free at once.
    first.stop()
    second.start()


def test_a_crashed_producers_lock_expires(rig: Rig) -> None:
    lock = FolderLock(rig.client, rig.input)
    lock.acquire()
    assert 0 < rig.client.ttl(lock.key) <= PRODUCER_LOCK_SECONDS
    holder = orjson.loads(rig.client.get(lock.key))  # type: ignore[arg-type]
    assert holder["folder"] == str(rig.input.resolve()) and holder["pid"] > 0
    with pytest.raises(FolderLockedError):
        FolderLock(rig.client, rig.input).acquire()
    rig.client.pexpire(lock.key, 50)  # time passes for a producer that died: its TTL runs out
    time.sleep(0.2)
    FolderLock(rig.client, rig.input).acquire()


def test_refresh_keeps_the_lock_and_notices_it_taken(rig: Rig) -> None:
    lock = FolderLock(rig.client, rig.input)
    lock.acquire()
    lock._next = 0.0  # due now
    rig.client.expire(lock.key, 5)
    assert lock.refresh()
    assert rig.client.ttl(lock.key) > 5  # refreshed to the full TTL
    rig.client.delete(lock.key)  # expired while Redis was away: taken again
    lock._next = 0.0
    assert lock.refresh() and rig.client.get(lock.key) == lock.value
    rig.client.set(lock.key, b"someone else")
    lock._next = 0.0
    assert not lock.refresh()
    lock.release()  # not ours: left alone
    assert rig.client.get(lock.key) == b"someone else"


def test_the_legacy_ledger_is_adopted_once_by_the_first_upgraded_producer(rig: Rig) -> None:
    # An entry as an earlier version wrote it: no first-seen time, no redo count.
    old = {"job": "j1", "digest": "d1", "model": "m", "state": QUEUED, "size": 10, "mtime": 1.0}
    rig.client.hset(LEGACY_LEDGER_KEY, "a.json", orjson.dumps({**old, "output": "a.json"}))
    rig.client.hset(LEGACY_OUTPUTS_KEY, "a.json", "a.json")
    assert adopt_legacy(rig.client, rig.ledger) == 1
    assert rig.client.exists(LEGACY_LEDGER_KEY, LEGACY_OUTPUTS_KEY) == 0
    entry = rig.ledger.get("a.json")
    assert entry is not None and (entry.job, entry.output) == ("j1", "a.json")
    assert rig.ledger.renamed_from("d1") == "a.json"  # the in-flight index is built
    assert rig.ledger.claim_output("a.json") == "a.json"  # the claim is this folder's now
    other = rig.root / "other"
    other.mkdir()
    assert adopt_legacy(rig.client, Ledger(rig.client, other, rig.output)) == 0  # once only
    assert adopt_legacy(rig.client, rig.ledger) == 0


def test_a_producer_whose_folder_was_taken_stops(rig: Rig) -> None:
    p = rig.producer()
    p.start()
    rig.client.set(p.lock.key, b"another producer")
    p.lock._next = 0.0  # a refresh is due
    p.step()
    assert p.stopping and p.lost_lock
    assert rig.client.get(p.lock.key) == b"another producer"


def test_a_lock_never_taken_is_not_taken_by_a_refresh(rig: Rig) -> None:
    lock = FolderLock(rig.client, rig.input)
    assert lock.refresh()
    assert not rig.client.exists(lock.key)


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over_at_once(rig: Rig) -> None:
    """A producer SIGKILLed and restarted at once is not refused for the lock's TTL."""
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is free now
    lock = FolderLock(rig.client, rig.input)
    dead = {"host": socket.gethostname(), "pid": gone.pid, "token": "t", "folder": "f"}
    rig.client.set(lock.key, orjson.dumps(dead), ex=PRODUCER_LOCK_SECONDS)
    lock.acquire()
    assert rig.client.get(lock.key) == lock.value
    # A live process's lock (this one's, held) or another host's is not stale.
    with pytest.raises(FolderLockedError):
        FolderLock(rig.client, rig.input).acquire()
    lock.release()
    elsewhere = {**dead, "host": "another-host"}
    rig.client.set(lock.key, orjson.dumps(elsewhere), ex=PRODUCER_LOCK_SECONDS)
    with pytest.raises(FolderLockedError, match="on another-host"):
        FolderLock(rig.client, rig.input).acquire()


def test_a_lock_with_this_processs_pid_that_it_does_not_hold_is_stale(rig: Rig) -> None:
    """A restarted container: the new producer has the pid its crashed predecessor had."""
    lock = FolderLock(rig.client, rig.input)
    before = {"host": socket.gethostname(), "pid": os.getpid(), "token": "old", "folder": "f"}
    rig.client.set(lock.key, orjson.dumps(before), ex=PRODUCER_LOCK_SECONDS)
    lock.acquire()
    assert rig.client.get(lock.key) == lock.value
