"""The producer's loop: take complete files, submit them, follow their jobs to the end.

``Producer`` wires settings, Redis, the ledger, the submitter, the tracker, the failed folder
and the folder's candidates together; :meth:`Producer.run_daemon` watches the folder until a
signal, :meth:`Producer.run_once` processes what is there and waits for it. Both take a file
only when :mod:`producer.completion` says it is complete, and hand a file that reads as cut
short back to the candidates instead of failing it.
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
from producer.completion import Incomplete, truncated_report
from producer.failed import FailedFolder
from producer.ledger import Ledger
from producer.submit import Submitter
from producer.tracker import Tracker
from producer.watcher import Candidates, start_observer

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
        self.candidates = Candidates(
            settings.input_dir,
            settings.settle_seconds,
            settings.open_file_seconds,
            settings.incomplete_seconds,
        )
        self.stopping = False

    def take(self, paths: list[Path]) -> list[Path]:
        """Submit each path that needs work; the paths to try again later (Redis was down)."""
        retry = []
        for path in paths:
            try:
                if not self.tracker.tracking(path):  # in flight and unchanged: nothing to do
                    self.tracker.add(self.submitter.consider(path))
            except Incomplete as e:
                self._incomplete(e)
            except BROKER_DOWN as e:
                log.warning("redis unavailable (%s); will retry %s", e, path.name)
                retry.append(path)
        return retry

    def run_once(self, progress: bool, poll: bool = False) -> int:
        """Process the files in the folder now, each once complete; wait for every job.

        0 if all succeeded. Files that appear later are left to the daemon; a file present at
        the start but still being written is waited for, by the same rules as the daemon's.
        """
        if not self.settings.input_dir.is_dir():
            log.info("once: no input folder %s", self.settings.input_dir)
            return 0
        observer = start_observer(self.candidates, poll)
        self.candidates.scan()
        wanted = self.candidates.pending()
        bar = tqdm(total=0, unit="chunk", disable=not progress, file=sys.stderr)
        retry: list[Path] = []
        try:
            while not self.stopping and (
                retry or self.tracker.jobs or wanted & self.candidates.pending()
            ):
                ready = [path for path in self.candidates.settled() if path in wanted]
                retry = self.take(retry + ready)
                self._poll()
                if progress:
                    bar.total, bar.n = self.tracker.chunks()[::-1]
                    bar.refresh()
                time.sleep(TICK)
        finally:
            observer.stop()
            observer.join(timeout=5)
            bar.close()
        failed = self.failed.count
        log.info("once: %d file(s) finished, %d failed", self.tracker.finished, failed)
        return 1 if failed or self.stopping else 0

    def run_daemon(self, poll: bool) -> int:
        """Watch the folder until SIGTERM/SIGINT."""
        self.settings.input_dir.mkdir(parents=True, exist_ok=True)
        observer = start_observer(self.candidates, poll)
        self.candidates.scan()
        log.info("watching %s (%s)", self.settings.input_dir, "polling" if poll else "events")
        next_scan = time.monotonic() + self.settings.rescan_seconds
        retry: list[Path] = []
        try:
            while not self.stopping:
                retry = self.take(retry + self.candidates.settled())
                self._poll()
                if time.monotonic() >= next_scan:
                    self.candidates.scan()
                    next_scan = time.monotonic() + self.settings.rescan_seconds
                time.sleep(TICK)
        finally:
            observer.stop()
            observer.join(timeout=5)
        return 0

    def _incomplete(self, cut: Incomplete) -> None:
        """A file read as cut short: read it again later, or fail it if it stayed so."""
        name, wait = cut.path.name, self.settings.incomplete_seconds
        if self.candidates.defer(cut.path, cut.reason):
            log.warning(
                "file=%s event=incomplete %s; reading it again once unchanged for %g s",
                name,
                cut.reason,
                wait,
            )
            return
        self.failed.fail(cut.path, truncated_report(cut.reason, wait), truncated=True)

    def _poll(self) -> None:
        try:
            self.tracker.poll()
        except Incomplete as e:  # a job vanished from Redis and its file now reads as cut short
            self._incomplete(e)
        except BROKER_DOWN as e:
            log.warning("redis unavailable (%s); retrying", e)
            time.sleep(1)
