"""``python -m producer`` / ``emotions-producer``: the daemon, ``--once`` and ``status``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from tqdm import tqdm

from emotions.celeryconfig import make_app
from emotions.errors import ConfigurationError
from emotions.jobs import JobStore, connect
from emotions.settings import Settings, load_settings, log_settings
from producer.ledger import Ledger
from producer.status import print_status
from producer.submit import Submitter
from producer.tracker import Tracker
from producer.watcher import Candidates, start_observer, takeable

log = logging.getLogger("producer")
TICK = 0.2  # seconds between checks of settled files and job states
# Redis restarting: from our own client, or from kombu when publishing a chunk.
BROKER_DOWN = (redis.ConnectionError, redis.TimeoutError, OperationalError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emotions-producer", description=__doc__)
    p.add_argument("command", nargs="?", choices=["run", "status"], default="run",
                   help="run the producer (default) or print the files in flight")  # fmt: skip
    p.add_argument("--once", action="store_true",
                   help="process the files in the input folder, wait for them, exit")  # fmt: skip
    p.add_argument("--poll", action="store_true",
                   help="poll the folder (Drive, NFS, CIFS mounts have no inotify)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar with --once")
    for flag in ("input-dir", "output-dir", "failed-dir", "broker-url", "model"):
        p.add_argument(f"--{flag}", help=f"overrides EMOTIONS_{flag.upper().replace('-', '_')}")
    p.add_argument("--chunk-size", type=int, help="overrides EMOTIONS_CHUNK_SIZE")
    return p.parse_args(argv)


class Producer:
    """Wires settings, Redis, the ledger, the submitter and the tracker together."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        client = connect(settings.backend_url)
        self.store = JobStore(client, settings.result_ttl)
        self.ledger = Ledger(client)
        self.submitter = Submitter(settings, app, self.store, self.ledger)
        self.tracker = Tracker(self.submitter, self.store, self.ledger)
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
        failed = self.submitter.failures
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(
            input_dir=args.input_dir, output_dir=args.output_dir, failed_dir=args.failed_dir,
            broker_url=args.broker_url, model=args.model, chunk_size=args.chunk_size,
        )  # fmt: skip
    except ConfigurationError as e:
        print(f"emotions-producer: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "status":
        return print_status(settings)
    log_settings(settings, "producer")
    producer = Producer(settings, make_app(settings))

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        producer.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.once:
        return producer.run_once(progress=not args.no_progress and sys.stderr.isatty())
    return producer.run_daemon(args.poll)
