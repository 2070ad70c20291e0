"""The producer's loop: take settled files, submit them, follow their jobs to the end.

``Producer`` wires settings, Redis, the ledger, the submitter, the tracker and the failed
folder together; :meth:`Producer.run_daemon` watches the folder until a signal,
:meth:`Producer.run_once` processes what is there and waits for it.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from tqdm import tqdm

from emotions.jobs import JobStore, connect
from emotions.settings import Settings
from producer.failed import FailedFolder
from producer.ledger import Ledger
from producer.submit import Submitter
from producer.tracker import Tracker
from producer.watcher import Candidates, start_observer, takeable

log = logging.getLogger("producer")
TICK = 0.2  # seconds between checks of settled files and job states
# Redis restarting: from our own client, or from kombu when publishing a chunk.
BROKER_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError)


class Producer:
    """Wires settings, Redis, the ledger, the submitter and the tracker together."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        client = connect(settings.backend_url)
        self.store = JobStore(client, settings.result_ttl)
        self.ledger = Ledger(client)
        self.failed = FailedFolder(settings, self.ledger)
        self.submitter = Submitter(settings, app, self.store, self.ledger, self.failed)
        self.tracker = Tracker(self.submitter, self.store, self.ledger, self.failed)
        self.stopping = False

    def take(self, paths: list[Path]) -> list[Path]:
        """Submit each path that needs work; the paths to try again later (Redis was down)."""
        retry = []
        for path in paths:
            try:
                if not self.tracker.tracking(path):  # in flight and unchanged: nothing to do
                    self.tracker.add(self.submitter.consider(path))
            except BROKER_DOWN as e:
                log.warning("redis unavailable (%s); will retry %s", e, path.name)
                retry.append(path)
        return retry

    def run_once(self, progress: bool) -> int:
        """Process the folder's files, wait for every job, 0 if all succeeded."""
        folder = self.settings.input_dir
        paths = sorted(p for p in folder.iterdir() if takeable(p)) if folder.is_dir() else []
        bar = tqdm(total=0, unit="chunk", disable=not progress, file=sys.stderr)
        while paths and not self.stopping:
            paths = self.take(paths)
            if paths:
                time.sleep(1)
        while self.tracker.jobs and not self.stopping:
            self._poll()
            if progress:
                bar.total, bar.n = self.tracker.chunks()[::-1]
                bar.refresh()
            time.sleep(TICK)
        bar.close()
        failed = self.failed.count
        log.info("once: %d file(s) finished, %d failed", self.tracker.finished, failed)
        return 1 if failed or self.stopping else 0

    def run_daemon(self, poll: bool) -> int:
        """Watch the folder until SIGTERM/SIGINT."""
        self.settings.input_dir.mkdir(parents=True, exist_ok=True)
        candidates = Candidates(self.settings.input_dir, self.settings.settle_seconds)
        observer = start_observer(candidates, poll)
        candidates.scan()
        log.info("watching %s (%s)", self.settings.input_dir, "polling" if poll else "events")
        next_scan = time.monotonic() + self.settings.rescan_seconds
        retry: list[Path] = []
        try:
            while not self.stopping:
                retry = self.take(retry + candidates.settled())
                self._poll()
                if time.monotonic() >= next_scan:
                    candidates.scan()
                    next_scan = time.monotonic() + self.settings.rescan_seconds
                time.sleep(TICK)
        finally:
            observer.stop()
            observer.join(timeout=5)
        return 0

    def _poll(self) -> None:
        try:
            self.tracker.poll()
        except BROKER_DOWN as e:
            log.warning("redis unavailable (%s); retrying", e)
            time.sleep(1)
