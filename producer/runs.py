"""The two ways to run a producer: the daemon, and ``--once``.

Both hold the input folder's lock (taken by :meth:`~producer.daemon.Producer.start`) until
they return, and turn the loop (:meth:`~producer.daemon.Producer.step`) after each wait
(:meth:`~producer.daemon.Producer.wait`: a tick, or until a full window has room again).
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

from producer.daemon import BROKER_DOWN, Producer
from producer.watcher import start_observer

log = logging.getLogger("producer")


def run_once(p: Producer, progress: bool, poll: bool = False) -> int:
    """Process the files in the folder now, each once complete; wait for every job.

    0 if all succeeded. Files that appear later are left to the daemon; a file present at
    the start but still being written is waited for, by the same rules as the daemon's.
    """
    if not p.settings.input_dir.is_dir():
        log.info("once: no input folder %s", p.settings.input_dir)
        p.stop()
        return 0
    observer = start_observer(p.candidates, poll)
    p.candidates.scan()
    wanted = p.candidates.pending()
    bar = tqdm(total=0, unit="chunk", disable=not progress, file=sys.stderr)
    try:
        while not p.stopping and (p.ready or p.tracker.jobs or wanted & p.candidates.pending()):
            p.step(only=wanted)
            if progress:
                bar.n, bar.total = p.tracker.chunks()
                bar.refresh()
            if not p.eager():
                p.wait()
    finally:
        observer.stop()
        observer.join(timeout=5)
        bar.close()
        p.stop()
    failed = p.failed.count
    log.info("once: %d file(s) finished, %d failed", p.tracker.finished, failed)
    return 1 if failed or p.stopping else 0


def run_daemon(p: Producer, poll: bool) -> int:
    """Watch the folder until SIGTERM/SIGINT (1 if another producer took the folder)."""
    p.settings.input_dir.mkdir(parents=True, exist_ok=True)
    observer = start_observer(p.candidates, poll)
    p.candidates.scan()
    log.info("watching %s (%s)", p.settings.input_dir, "polling" if poll else "events")
    next_scan = time.monotonic() + p.settings.rescan_seconds
    try:
        while not p.stopping:
            p.step()
            if time.monotonic() >= next_scan:
                p.candidates.scan()
                prune(p)
                next_scan = time.monotonic() + p.settings.rescan_seconds
            if not p.eager():
                p.wait()
    finally:
        observer.stop()
        observer.join(timeout=5)
        p.stop()
    return 1 if p.lost_lock else 0


def prune(p: Producer) -> None:
    """Forget ledger entries of files that left the input folder (bounded ledger)."""
    try:
        present = {path.name for path in p.settings.input_dir.iterdir()}
        keep = {f.sub.name for f in p.tracker.jobs.values()}
        if removed := p.ledger.prune(present, keep):
            log.info("ledger: forgot %d file(s) no longer in the input folder", removed)
    except (OSError, *BROKER_DOWN) as e:
        log.warning("ledger pruning skipped: %s", e)
    except Exception as e:  # never the end of the daemon: the next rescan prunes again
        log.exception("ledger pruning failed (the producer goes on): %r", e)
