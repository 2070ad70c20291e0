"""Host cost of what the chunk task does around the engine: render its output records and store
them in Redis, measured in process on a real ``redis-server``.

Kept apart from the simulator because it follows the task's current storage format
(:func:`emotions.output.render` + :meth:`emotions.jobs.JobStore.store_part`); when the task
stores something else (label indices), this is the one function to change.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotions.jobs import JobStore, connect
from emotions.output import render
from harness.stack import RedisServer
from worker.inference import labels_for


def render_and_store(
    texts: Sequence[str], indices: np.ndarray, labels: Sequence[str], chunk: int
) -> dict[str, float]:
    """Process CPU seconds per 1,000 comments to render and to store every chunk, and the
    wall seconds per 1,000 of the store (a Redis round trip and the server's own work)."""
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        server = RedisServer(Path(tmp), fsync="everysec")
        server.start()
        try:
            store = JobStore(connect(server.url), 3600)
            store.create("bench", name="bench.json", model="bench", digest="bench")
            render_cpu = store_cpu = store_wall = 0.0
            for index, start in enumerate(range(0, len(texts), chunk)):
                end = min(len(texts), start + chunk)
                records = [[f"c{i}", texts[i]] for i in range(start, end)]
                names = labels_for(indices[start : start + len(records)], labels)
                cpu = time.process_time()
                payload = render(records, names)
                mark, wall = time.process_time(), time.perf_counter()
                store.store_part("bench", index, payload)
                store_wall += time.perf_counter() - wall
                render_cpu += mark - cpu
                store_cpu += time.process_time() - mark
        finally:
            server.stop()
    per_1k = 1000 / max(1, len(texts))
    return {
        "render": render_cpu * per_1k,
        "store": store_cpu * per_1k,
        "store wall": store_wall * per_1k,
    }
