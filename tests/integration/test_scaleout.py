"""Scale-out on one machine: two workers share the chunks of one file, and the production
split of queues (inference workers, a results worker without torch) writes the same output."""

from __future__ import annotations

import re
import sys
from collections import Counter

import pytest

from harness.procs import spawn, wait_for
from harness.stack import Stack, write_json

pytestmark = pytest.mark.slow

RECORDS = 200  # chunks of 8: 25 chunks
CHUNKS = -(-RECORDS // 8)
CHUNK_LINE = re.compile(r"file=(\S+) chunk=(\d+) records=(\d+) seconds=")

# ``celery`` with the GPU stack made unimportable, as in the slim producer image.
NO_TORCH = (
    "import sys; sys.modules.update(dict.fromkeys("
    "('torch', 'transformers', 'tokenizers', 'safetensors', 'numpy'), None)); "
    "from celery.__main__ import main; sys.argv[0] = 'celery'; main()"
)


def comments(name: str) -> list[dict[str, str]]:
    return [
        {"id": f"{name}-{i}", "comment": f"comment {i} " + "word " * (i % 40)}
        for i in range(RECORDS)
    ]


def chunks_done(stack: Stack, worker: str, name: str) -> list[int]:
    """Chunk indexes of ``name`` that ``worker`` logged as done, in the order it did them."""
    return [int(m.group(2)) for m in CHUNK_LINE.finditer(stack.log(worker)) if m.group(1) == name]


def test_two_workers_share_the_chunks_of_one_file(stack: Stack) -> None:
    for name in ("w1", "w2"):
        # Each chunk takes at least 0.2 s, so neither worker can drain the queue alone
        # before the other has taken its share.
        stack.start_worker(name, faulty=True, FAULT_SLOW_SECONDS="0.2")
    write_json(stack.input / "big.json", comments("big"))

    done = stack.run_producer("--once")
    assert done.returncode == 0, done.stderr

    w1, w2 = chunks_done(stack, "w1", "big.json"), chunks_done(stack, "w2", "big.json")
    assert w1 and w2, (w1, w2)  # both workers took part
    assert len(w1) >= CHUNKS // 4 and len(w2) >= CHUNKS // 4, (w1, w2)  # roughly a fair share
    assert Counter(w1 + w2) == Counter(range(CHUNKS))  # every chunk once, none twice
    records = stack.output_records("big")
    assert [r["id"] for r in records] == [c["id"] for c in comments("big")]  # complete, in order
    assert [r["comment"] for r in records] == [c["comment"] for c in comments("big")]


def test_split_queues_with_a_results_worker_without_torch(stack: Stack) -> None:
    """The Procfile/compose topology: ``-Q inference`` on the GPU, ``-Q results`` beside the
    output folder in the slim image (no torch), two inference workers."""
    for name in ("gpu0", "gpu1"):
        stack.start_worker(name, "-Q", "inference", faulty=True, FAULT_SLOW_SECONDS="0.1")
    log = stack.root / "logs" / "results.log"
    cmd = [
        sys.executable,
        "-c",
        NO_TORCH,
        "-A",
        "worker",
        "worker",
        "-c",
        "1",
        "-Q",
        "results",
        "-n",
        "results@%h",
        "-l",
        "info",
        "--without-gossip",
        "--without-mingle",
    ]
    results = spawn(cmd, log, env=stack.env())
    stack.procs.append(results)
    wait_for(
        lambda: results.poll() is not None or b" ready." in log.read_bytes(),
        60,
        "the results worker",
    )
    assert results.poll() is None, stack.log("results")
    write_json(stack.input / "a.json", comments("a"))
    write_json(stack.input / "b.json", comments("b")[:30])

    done = stack.run_producer("--once")
    assert done.returncode == 0, done.stderr

    assert [r["id"] for r in stack.output_records("a")] == [c["id"] for c in comments("a")]
    assert [r["id"] for r in stack.output_records("b")] == [c["id"] for c in comments("b")[:30]]
    # Chunks ran only on the inference workers, on both; files were written only by `results`.
    for name, expected in (("a.json", CHUNKS), ("b.json", 4)):
        ran = chunks_done(stack, "gpu0", name) + chunks_done(stack, "gpu1", name)
        assert Counter(ran) == Counter(range(expected)), name
    assert chunks_done(stack, "gpu0", "a.json") and chunks_done(stack, "gpu1", "a.json")
    assert not CHUNK_LINE.search(stack.log("results"))
    written = re.findall(r"file=(\S+) written=", stack.log("results"))
    assert sorted(written) == ["a.json", "b.json"]
    assert "written=" not in stack.log("gpu0") + stack.log("gpu1")
    assert "worker ready (inference=False," in stack.log("results")  # it loaded no model
