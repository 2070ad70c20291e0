"""producer.failed: a failed input is moved aside with a report beside it, never over another
failed file (``x.json``, then ``x~2.json``), with a name that fits however long the input's,
and the ledger remembers the failure even when the move itself fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from emotions.constants import FAILED, QUEUED
from producer.failed import FailedFolder, free_name
from producer.ledger import Entry
from tests.producer.rig import Rig


def report(folder: Path, name: str) -> dict[str, Any]:
    return orjson.loads((folder / f"{name}.error.json").read_bytes())


@pytest.fixture
def failed(rig: Rig) -> FailedFolder:
    return FailedFolder(rig.settings(), rig.ledger)


def test_free_name_counts_up_past_taken_names(tmp_path: Path) -> None:
    assert free_name(tmp_path, "x.json") == "x.json"
    (tmp_path / "x.json").write_bytes(b"")
    assert free_name(tmp_path, "x.json") == "x~2.json"
    (tmp_path / "x~2.json.error.json").write_bytes(b"")  # a report alone also takes the name
    assert free_name(tmp_path, "x.json") == "x~3.json"
    (tmp_path / "README").write_bytes(b"")
    assert free_name(tmp_path, "README") == "README~2"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert free_name(tmp_path, "dangling") == "dangling~2"
    assert free_name(tmp_path, "../../etc/x.json") == "x~3.json"  # always a plain name


def test_a_name_failing_twice_never_overwrites(rig: Rig, failed: FailedFolder) -> None:
    path = rig.input / "x.json"
    path.write_bytes(b"first")
    failed.fail(path, "first error")
    path.write_bytes(b"second")
    failed.fail(path, "second error")
    assert sorted(p.name for p in rig.failed.iterdir()) == [
        "x.json",
        "x.json.error.json",
        "x~2.json",
        "x~2.json.error.json",
    ]
    assert (rig.failed / "x.json").read_bytes() == b"first"
    assert (rig.failed / "x~2.json").read_bytes() == b"second"
    assert report(rig.failed, "x.json")["error"] == "first error"
    assert report(rig.failed, "x~2.json")["error"] == "second error"
    assert report(rig.failed, "x~2.json")["file"] == "x.json"  # the name the user gave it
    assert failed.count == 2
    assert list(rig.input.iterdir()) == []


def test_the_report_says_why_with_the_model_and_the_time(rig: Rig, failed: FailedFolder) -> None:
    path = rig.input / "bad.csv"
    path.write_bytes(b"bytes")
    failed.fail(path, "no comments here", job="j1", missing_chunks=[1, 2])
    rep = report(rig.failed, "bad.csv")
    assert rep["file"] == "bad.csv"
    assert rep["error"] == "no comments here"
    assert rep["model"] == "m"
    assert (rep["job"], rep["missing_chunks"]) == ("j1", [1, 2])
    assert rep["failed_at"].endswith("Z") and rep["failed_at"][:2] == "20"


def test_the_ledger_records_the_failure_with_the_file_as_it_was(
    rig: Rig, failed: FailedFolder
) -> None:
    path = rig.input / "bad.json"
    path.write_bytes(b"12345")
    st = path.stat()
    rig.ledger.put("bad.json", Entry("j1", "d", "m", QUEUED, 1, 1.0, output="bad.json"))
    failed.fail(path, "broken")
    entry = rig.ledger.get("bad.json")
    assert entry is not None
    assert (entry.state, entry.error, entry.size, entry.mtime) == (
        FAILED,
        "broken",
        5,
        st.st_mtime,
    )
    assert (entry.job, entry.output) == ("j1", "bad.json")  # the rest of the entry is kept


def test_a_file_already_gone_still_gets_its_report(rig: Rig, failed: FailedFolder) -> None:
    failed.fail(rig.input / "gone.json", "the input file disappeared")
    assert report(rig.failed, "gone.json")["error"] == "the input file disappeared"
    assert not (rig.failed / "gone.json").exists()
    assert rig.ledger.get("gone.json").state == FAILED  # type: ignore[union-attr]


def test_a_name_of_250_bytes_fails_with_a_report_that_fits(rig: Rig, failed: FailedFolder) -> None:
    name = "日本語のコメント" * 10 + "x" * 5 + ".json"  # 250 bytes: as long as a name gets
    assert len(name.encode()) == 250
    path = rig.input / name
    path.write_bytes(b"data")
    failed.fail(path, "bad")
    names = sorted(os.listdir(rig.failed))
    assert len(names) == 2 and all(len(n.encode()) < 255 for n in names)
    moved, rep = names if not names[0].endswith(".error.json") else names[::-1]
    assert rep == moved + ".error.json"
    assert (rig.failed / moved).read_bytes() == b"data"
    assert orjson.loads((rig.failed / rep).read_bytes())["file"] == name
    assert not path.exists()


def test_a_non_utf8_name_is_reported_readably(rig: Rig, failed: FailedFolder) -> None:
    path = rig.input / os.fsdecode(b"caf\xe9.json")
    path.write_bytes(b"data")
    failed.fail(path, "bad")
    assert (rig.failed / path.name).read_bytes() == b"data"  # the same bytes, moved
    rep = orjson.loads((rig.failed / (path.name + ".error.json")).read_bytes())
    assert rep["file"] == "caf\\xe9.json"


def test_when_the_failed_folder_cannot_be_made_the_file_stays(rig: Rig, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")
    failed = FailedFolder(rig.settings(failed_dir=blocker / "failed"), rig.ledger)
    path = rig.input / "bad.json"
    path.write_bytes(b"data")
    failed.fail(path, "bad")
    assert path.read_bytes() == b"data"
    assert failed.count == 1
    entry = rig.ledger.get("bad.json")
    assert entry is not None and entry.state == FAILED
    assert (entry.size, entry.mtime) == (4, path.stat().st_mtime)  # not taken again unchanged
