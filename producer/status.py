"""``python -m producer status``: the files in flight and how far along they are."""

from __future__ import annotations

import time

from emotions.constants import QUEUED
from emotions.jobs import JobStore, connect
from emotions.settings import Settings
from producer.ledger import Ledger


def print_status(settings: Settings) -> int:
    """Print one line per file in flight (done/total chunks), then a summary. Always 0."""
    client = connect(settings.backend_url)
    store, entries = JobStore(client, settings.result_ttl), Ledger(client).all()
    counts: dict[str, int] = {}
    rows = []
    for name, entry in sorted(entries.items()):
        counts[entry.state] = counts.get(entry.state, 0) + 1
        if entry.state != QUEUED:
            continue
        done, total = store.progress(entry.job)
        age = time.time() - entry.updated
        rows.append(f"{name}\t{done}/{total if total is not None else '?'} chunks\t"
                    f"{entry.records or '?'} comments\t{age:.0f}s")  # fmt: skip
    print("\n".join(["file\tprogress\tcomments\tage", *rows]) if rows else "no files in flight")
    print("ledger: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty"))
    return 0
