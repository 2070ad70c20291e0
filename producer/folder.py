"""One producer per input folder: its lock in Redis, and the adoption of older state.

Several producers may share one Redis and one set of workers, each on its own folder (its
ledger is keyed by the folder, see :mod:`producer.ledger`). Two on the same folder would
submit each other's files, so a producer takes the folder's lock at start (``SET NX`` with a
TTL of ``PRODUCER_LOCK_SECONDS``) and refreshes it while it runs; a second one is refused
with a message naming the first. A producer that crashed leaves a lock that expires by
itself; on the same host, a lock whose process is gone (or whose pid is now the new
producer's own, as in a restarted container) is taken over at once, so a restart after a
crash does not wait.

Before per-folder keys, the ledger and the output claims were one hash each for the whole
Redis. The first upgraded producer to start adopts them for its own folder, once and
atomically (upgrade the daemon of the folder those files came from first): its entries
become that folder's, the claims keep their output names, and the in-flight index is built
from the entries still in flight.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path

import orjson
import redis

from emotions.constants import (
    LEGACY_LEDGER_KEY,
    LEGACY_OUTPUTS_KEY,
    PRODUCER_LOCK_REFRESH,
    PRODUCER_LOCK_SECONDS,
    QUEUED,
    producer_lock_key,
)
from emotions.errors import FolderLockedError
from producer.ledger import Ledger, folder_id

log = logging.getLogger(__name__)
_HELD_HERE: set[bytes] = set()  # the locks this process holds (by value)

# KEYS[1] lock. ARGV[1] this producer's value, ARGV[2] TTL. 1: refreshed; 0: lost to another;
# 2: it had expired and is taken again.
_REFRESH = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 2
"""

# KEYS[1] lock. ARGV[1] the stale holder's value, ARGV[2] ours, ARGV[3] TTL. 1 when taken over.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] legacy ledger, KEYS[2] the folder's ledger, KEYS[3] legacy claims, KEYS[4] the output
# folder's claims. ARGV[1] owner prefix of this folder. 1 when adopted, 0 when nothing to adopt
# (no legacy ledger, or this folder already has one).
_ADOPT = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
local claims = redis.call('HGETALL', KEYS[3])
for i = 1, #claims, 2 do
  redis.call('HSETNX', KEYS[4], claims[i], ARGV[1] .. claims[i + 1])
end
redis.call('DEL', KEYS[3])
return 1
"""


class FolderLock:
    """The lock of one input folder, held by the running producer."""

    def __init__(self, client: redis.Redis, input_dir: Path) -> None:
        self.r = client
        self.folder = input_dir
        self.key = producer_lock_key(folder_id(input_dir))
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        self.value = orjson.dumps({**holder, "folder": str(input_dir.resolve())})
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._take_over = client.register_script(_TAKE_OVER)
        self._next = 0.0
        self._held = False

    def acquire(self) -> None:
        """Take the folder or raise :class:`FolderLockedError` naming the producer holding it."""
        raw: bytes | None = None
        for _ in range(2):  # the holder may release or expire between SET and GET
            if self.r.set(self.key, self.value, nx=True, ex=PRODUCER_LOCK_SECONDS):
                break
            raw = self.r.get(self.key)  # type: ignore[assignment]
            if raw is not None and _stale(raw):
                args: list[bytes | int] = [raw, self.value, PRODUCER_LOCK_SECONDS]
                if int(self._take_over(keys=[self.key], args=args)):
                    log.warning(
                        "took over the lock of %s from a producer no longer running: %s",
                        self.folder,
                        raw.decode(errors="replace"),
                    )
                    break
        else:
            self._refuse(raw)
        self._next = time.monotonic() + PRODUCER_LOCK_REFRESH
        self._held = True
        _HELD_HERE.add(self.value)

    def _refuse(self, raw: bytes | None) -> None:
        """Raise :class:`FolderLockedError` naming the holder (as its lock records it)."""
        holder = orjson.loads(raw) if raw else {}
        raise FolderLockedError(
            f"another producer already watches {self.folder.resolve()} (pid "
            f"{holder.get('pid', '?')} on {holder.get('host', '?')}); run one producer per "
            f"input folder. If that producer has crashed, its lock expires within "
            f"{PRODUCER_LOCK_SECONDS} s"
        )

    def refresh(self) -> bool:
        """Keep the lock (when due); False when another producer has taken the folder. A
        lock never acquired (or released) is left alone."""
        now = time.monotonic()
        if not self._held or now < self._next:
            return True
        outcome = int(self._refresh(keys=[self.key], args=[self.value, PRODUCER_LOCK_SECONDS]))
        self._next = now + PRODUCER_LOCK_REFRESH
        if outcome == 2:
            log.warning("the lock of %s had expired (Redis away?); taken again", self.folder)
        return outcome != 0

    def release(self) -> None:
        """Let the next producer start at once (only our own lock is deleted)."""
        self._held = False
        _HELD_HERE.discard(self.value)
        self._release(keys=[self.key], args=[self.value])


def _stale(raw: bytes) -> bool:
    """A lock left by a producer of this host that no longer runs: its pid is gone, or is
    this very process's pid without being one of its locks (a restarted container reuses
    pids)."""
    try:
        holder = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    if holder["pid"] == os.getpid():
        return raw not in _HELD_HERE
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def adopt_legacy(client: redis.Redis, ledger: Ledger) -> int:
    """Adopt the single ledger and claims of an earlier version for this folder, once; the
    number of entries adopted (0 when there was nothing to adopt)."""
    keys = [LEGACY_LEDGER_KEY, ledger.key, LEGACY_OUTPUTS_KEY, ledger.outputs]
    if not int(client.register_script(_ADOPT)(keys=keys, args=[f"{ledger.folder}/"])):
        return 0
    entries = ledger.all()
    for name, entry in entries.items():
        if entry.state == QUEUED:
            ledger.put(name, entry)  # builds its in-flight index field
    log.info(
        "adopted the ledger of an earlier version (%d file(s)) for %s",
        len(entries),
        ledger.input_dir,
    )
    return len(entries)
