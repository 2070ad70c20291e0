"""Host cost of what surrounds the engine, measured in process on a real ``redis-server``:
storing a chunk's label indexes (the chunk task, on the inference worker) and rendering its
output records (the assembly, on the results worker, off the GPU's critical path).

Kept apart from the simulator because it follows the storage format
(:meth:`emotions.jobs.JobStore.store_part`, :func:`emotions.output.render`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotions.formats import Record
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
            total = -(-len(texts) // chunk)
            store.create("bench", name="bench.json", model="bench", digest="bench", total=total)
            render_cpu = store_cpu = store_wall = 0.0
            for index, start in enumerate(range(0, len(texts), chunk)):
                end = min(len(texts), start + chunk)
                records = [Record(f"c{i}", texts[i]) for i in range(start, end)]
                part = indices[start:end]
                names = labels_for(part, labels)
                cpu = time.process_time()
                render(records, names)
                mark, wall = time.process_time(), time.perf_counter()
                store.store_part("bench", index, part.tolist(), list(labels))
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
