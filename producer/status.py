"""``python -m producer status``: the files in flight of the input folder and how far along
they are (each input folder has its own ledger: several producers may share one Redis)."""

from __future__ import annotations

import sys
import time

from kombu.utils.url import maybe_sanitize_url

from emotions.constants import QUEUED
from emotions.jobs import JobStore, connect
from emotions.redisfaults import UNAVAILABLE, check_writes
from emotions.settings import Settings
from producer.ledger import Ledger


def print_status(settings: Settings) -> int:
    """Print one line per file in flight (done/total chunks), then a summary.

    0, or 1 within seconds (not after minutes of retries) when Redis cannot be reached or
    refuses commands.
    """
    client = connect(settings.backend_url, patient=False)
    try:
        ledger = Ledger(client, settings.input_dir, settings.output_dir)
        store, entries = JobStore(client, settings.result_ttl), ledger.all()
        counts: dict[str, int] = {}
        rows = []
        for name, entry in sorted(entries.items()):
            counts[entry.state] = counts.get(entry.state, 0) + 1
            if entry.state != QUEUED:
                continue
            done, total = store.progress(entry.job)
            age = time.time() - entry.updated
            rows.append(
                f"{name}\t{done}/{total if total is not None else '?'} chunks\t"
                f"{entry.records or '?'} comments\t{age:.0f}s"
            )
        check_writes(client)  # workers and producers wait while Redis refuses writes
    except UNAVAILABLE as e:  # down, or refusing commands (see emotions.redisfaults)
        url = maybe_sanitize_url(settings.backend_url)
        print(
            f"emotions-producer: redis unavailable (cannot reach Redis at {url}, or it refuses "
            f"writes): {e}",
            file=sys.stderr,
        )
        return 1
    print("\n".join(["file\tprogress\tcomments\tage", *rows]) if rows else "no files in flight")
    print(f"folder: {settings.input_dir.resolve()}")
    print("ledger: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty"))
    return 0
