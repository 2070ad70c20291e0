"""The pipeline end to end with real parts: redis-server, celery workers, the producer."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from harness.procs import wait_for
from harness.stack import Stack, write_json
from harness.standins import GO_EMOTIONS

pytestmark = pytest.mark.slow

COMMENTS = [
    {"id": "a1", "comment": "This video made my day, thank you so much!"},
    {"id": "a2", "comment": "هذا الفيديو رائع جدا، شكرا لك"},
    {"id": "a3", "comment": ""},
    {"id": "a3", "comment": "duplicate id, still its own record"},
    {"id": 7, "comment": "😂😂😂"},
    {"id": "a5", "comment": "C'est vraiment génial ! " * 400},  # far above 512 tokens
]


def test_once_labels_every_record_in_order(stack: Stack) -> None:
    write_json(stack.input / "videoA.json", COMMENTS)
    lines = [{"cid": f"c{i}", "text": f"Bu video harika {i} 🔥", "votes": "3"} for i in range(30)]
    (stack.input / "videoB.jsonl").write_text("\n".join(orjson.dumps(x).decode() for x in lines))
    stack.start_worker("w1")
    done = stack.run_producer("--once")
    assert done.returncode == 0, done.stderr
    a = stack.output_records("videoA")
    assert [(r["id"], r["comment"]) for r in a] == [(c["id"], c["comment"]) for c in COMMENTS]
    assert all(set(r) == {"id", "comment", "emotion"} for r in a)
    assert all(r["emotion"] in GO_EMOTIONS for r in a)
    b = stack.output_records("videoB")
    assert [r["id"] for r in b] == [f"c{i}" for i in range(30)]  # 4 chunks of 8, in order
    raw = (stack.output / "videoA.json").read_text(encoding="utf-8")
    assert "هذا الفيديو" in raw and "😂" in raw  # non-ASCII written as is
    # A second run finds nothing to do: the outputs are not rewritten.
    before = (stack.output / "videoA.json").stat().st_mtime_ns
    again = stack.run_producer("--once")
    assert again.returncode == 0, again.stderr
    assert (stack.output / "videoA.json").stat().st_mtime_ns == before


def test_bad_file_goes_to_failed_with_report_and_others_finish(stack: Stack) -> None:
    (stack.input / "broken.json").write_text('[{"id": "x" "comment": "no comma"}]')
    write_json(stack.input / "good.json", COMMENTS[:2])
    stack.start_worker("w1")
    done = stack.run_producer("--once")
    assert done.returncode == 1
    assert (stack.failed / "broken.json").exists() and not (stack.input / "broken.json").exists()
    report = orjson.loads((stack.failed / "broken.json.error.json").read_bytes())
    assert "invalid JSON" in report["error"]
    assert not (stack.output / "broken.json").exists()
    assert len(stack.output_records("good")) == 2


def test_daemon_picks_up_existing_and_new_files(stack: Stack) -> None:
    write_json(stack.input / "before.json", COMMENTS[:3])
    stack.start_worker("w1")
    stack.start_producer()
    wait_for(lambda: (stack.output / "before.json").exists(), 60, "the file present at start")
    # Written in place (not renamed in): taken only once its size stops changing.
    with (stack.input / "slow.json").open("w") as f:
        f.write('[{"id": "s1", "comment": "first half"},')
        f.flush()
        wait_for(lambda: True, 1, "")  # let the watcher see a partial file
        f.write('{"id": "s2", "comment": "second half"}]')
    (stack.input / ".hidden.json").write_text("not json at all")
    (stack.input / "download.json.part").write_text("not json at all")
    wait_for(lambda: (stack.output / "slow.json").exists(), 60, "the file written in place")
    assert [r["id"] for r in stack.output_records("slow")] == ["s1", "s2"]
    assert not list(stack.failed.iterdir())  # hidden and partial files were left alone


def test_worker_without_gpu_exits_at_once_naming_the_setting(stack: Stack) -> None:
    proc = stack.start_worker("nogpu", wait=False, EMOTIONS_DEVICE="cuda")
    assert proc.wait(timeout=60) != 0
    assert "EMOTIONS_DEVICE=cpu" in stack.log("nogpu")


def test_model_change_redoes_outputs(stack: Stack, xlmr_model: object) -> None:
    write_json(stack.input / "v.json", COMMENTS[:2])
    stack.start_worker("w1")
    assert stack.run_producer("--once").returncode == 0
    first = (stack.output / "v.json").stat().st_mtime_ns
    stack.stop_all(graceful=False)
    stack.start_worker("w2", EMOTIONS_MODEL=str(xlmr_model))
    assert stack.run_producer("--once", EMOTIONS_MODEL=str(xlmr_model)).returncode == 0
    assert (stack.output / "v.json").stat().st_mtime_ns != first


def test_child_that_cannot_load_the_model_stops_the_worker(stack: Stack, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(stack.model, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")  # config still loads
    proc = stack.start_worker("broken", wait=False, EMOTIONS_MODEL=str(broken))
    assert proc.wait(timeout=90) == 1  # stopped, not a pool restarting the child forever
    assert "model load failed in pool child" in stack.log("broken")


def test_results_worker_needs_no_gpu(stack: Stack) -> None:
    stack.start_worker("results", "-Q", "results", EMOTIONS_DEVICE="cuda")
    stack.start_worker("gpu", "-Q", "inference")  # EMOTIONS_DEVICE=cpu stands in for the GPU
    write_json(stack.input / "split.json", COMMENTS[:3])
    assert stack.run_producer("--once").returncode == 0
    assert "written=" in stack.log("results") and "written=" not in stack.log("gpu")
