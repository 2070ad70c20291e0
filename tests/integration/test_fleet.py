"""The fleet layout on one machine: two producers, each on its own input folder with its own
output folder, share one Redis, one inference worker and two results workers.

Both folders hold files of the same names, so a ledger, claim or output keyed by bare file
name would mix them up; each producer's ``--once`` must report only its own files.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness.stack import Stack, write_json
from tests.services import reference_labels, varied

pytestmark = pytest.mark.slow

FILES = 6  # per folder
FINISHED = re.compile(r"file=(\S+) event=finished records=(\d+)")
WRITTEN = re.compile(r"file=(\S+) written=")


def fill(folder: Path, tag: str) -> dict[str, list[dict[str, Any]]]:
    """``FILES`` inputs in ``folder`` (JSON arrays and JSON Lines, several chunks each), the
    same names in every folder, texts that name the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for i in range(FILES):
        records = varied(10 + 7 * i, f"{tag}{i}-")
        if i % 2:
            path = folder / f"f{i}.jsonl"
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
            tmp.rename(path)
        else:
            path = write_json(folder / f"f{i}.json", records)
        made[path.name] = records
    return made


def test_two_producers_two_results_workers_one_redis(stack: Stack) -> None:
    stack.start_worker("gpu", "-Q", "inference")
    stack.start_worker("res1", "-Q", "results")
    stack.start_worker("res2", "-Q", "results")
    folders = {tag: (stack.root / f"in-{tag}", stack.root / f"out-{tag}") for tag in ("a", "b")}
    inputs = {tag: fill(src, tag) for tag, (src, _) in folders.items()}
    producers = {
        tag: stack.start_producer(
            "--once", "--input-dir", str(src), "--output-dir", str(out), name=f"producer-{tag}"
        )
        for tag, (src, out) in folders.items()
    }
    for tag, proc in producers.items():
        assert proc.wait(timeout=300) == 0, stack.log(f"producer-{tag}")

    for tag, (_, out) in folders.items():
        log = stack.log(f"producer-{tag}")
        reported = {m.group(1): int(m.group(2)) for m in FINISHED.finditer(log)}
        # Each producer reports its own files, each once, with its own record counts.
        assert reported == {name: len(r) for name, r in inputs[tag].items()}, log
        assert Counter(m.group(1) for m in FINISHED.finditer(log)) == Counter(list(inputs[tag]))
        assert f"once: {FILES} file(s) finished, 0 failed" in log, log
        assert sorted(p.name for p in out.iterdir()) == sorted(
            f"{Path(name).stem}.json" for name in inputs[tag]
        )
        for name, records in inputs[tag].items():
            got = orjson.loads((out / f"{Path(name).stem}.json").read_bytes())
            assert [(r["id"], r["comment"]) for r in got] == [
                (r["id"], r["comment"]) for r in records
            ], (tag, name)
            assert [r["emotion"] for r in got] == reference_labels(stack, records, 8), (tag, name)
    assert not any(stack.output.iterdir())  # nothing went to the workers' own output folder

    # Twelve files (six names, twice) assembled once each, by the results workers alone.
    written = Counter(
        m.group(1) for name in ("res1", "res2") for m in WRITTEN.finditer(stack.log(name))
    )
    assert written == Counter({name: 2 for name in inputs["a"]}), written
    assert WRITTEN.search(stack.log("res1")) and WRITTEN.search(stack.log("res2"))  # both served
    assert not WRITTEN.search(stack.log("gpu"))
