"""``python -m producer`` / ``emotions-producer``: the daemon, ``--once`` and ``status``.

The command line only: flags are parsed, merged over the environment into one settings
object, and handed to :class:`~producer.daemon.Producer`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from emotions.celeryconfig import make_app
from emotions.errors import ConfigurationError, FolderLockedError
from emotions.settings import load_settings, log_settings
from producer.daemon import Producer
from producer.runs import run_daemon, run_once
from producer.status import print_status

log = logging.getLogger("producer")
DESCRIPTION = (
    "Watch the input folder and queue every comment file for emotion tagging; "
    "--once processes what is there and exits, status lists the files in flight."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="emotions-producer", description=DESCRIPTION)
    p.add_argument(
        "command",
        nargs="?",
        choices=["run", "status"],
        default="run",
        help="run the producer (default) or print the files in flight",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="process the files in the input folder, wait for them, exit",
    )
    p.add_argument(
        "--poll",
        action="store_true",
        help="poll the folder (Drive, NFS, CIFS mounts have no inotify)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar with --once")
    for flag in ("input-dir", "output-dir", "failed-dir", "spool-dir", "broker-url", "model"):
        p.add_argument(f"--{flag}", help=f"overrides EMOTIONS_{flag.upper().replace('-', '_')}")
    p.add_argument("--chunk-size", type=int, help="overrides EMOTIONS_CHUNK_SIZE")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(
            input_dir=args.input_dir,
            output_dir=args.output_dir,
            failed_dir=args.failed_dir,
            spool_dir=args.spool_dir,
            broker_url=args.broker_url,
            model=args.model,
            chunk_size=args.chunk_size,
        )
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
    try:
        producer.start()
    except FolderLockedError as e:
        print(f"emotions-producer: {e}", file=sys.stderr)
        return 2
    if args.once:
        return run_once(
            producer, progress=not args.no_progress and sys.stderr.isatty(), poll=args.poll
        )
    return run_daemon(producer, args.poll)
