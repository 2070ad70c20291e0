"""Several results workers (one of them ``-c 2``) serve one results queue: every file is
assembled exactly once, by one of them, and every output holds each record once, in order."""

from __future__ import annotations

import re
from collections import Counter

import orjson
import pytest

from harness.stack import Stack, write_json
from tests.services import assert_exactly_once, comments

pytestmark = pytest.mark.slow

FILES = 12
WRITTEN = re.compile(r"file=(\S+) written=")


def test_each_file_is_assembled_once_by_one_of_several_results_workers(stack: Stack) -> None:
    stack.start_worker("gpu", "-Q", "inference")
    stack.start_worker("res1", "-Q", "results")
    stack.start_worker("res2", "-Q", "results", "-c", "2")
    expected = {}
    for i in range(FILES):
        records = comments(20 + i, f"f{i}-")
        if i % 2:
            path = stack.input / f"f{i}.jsonl"
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        else:
            write_json(stack.input / f"f{i}.json", records)
        expected[f"f{i}"] = records

    done = stack.run_producer("--once", timeout=300)
    assert done.returncode == 0, done.stderr

    for stem, records in expected.items():
        assert_exactly_once(stack, stem, records)
    written = Counter(
        m.group(1) for name in ("res1", "res2") for m in WRITTEN.finditer(stack.log(name))
    )
    assert sorted(written) == sorted(f"f{i}.{'jsonl' if i % 2 else 'json'}" for i in range(FILES))
    assert set(written.values()) == {1}, written  # no file written twice
    assert not WRITTEN.search(stack.log("gpu"))  # the inference worker wrote nothing
