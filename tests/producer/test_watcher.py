"""producer.watcher: which names are ignored, when a file counts as settled, and that real
watchdog observers (inotify and polling) nominate created, moved-in and renamed files, on a real
folder under tmp_path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.observers.api import BaseObserver

from producer import watcher
from producer.watcher import Candidates, ignored, start_observer

SETTLE = 0.6
POLL = 0.1  # polling observer interval
FAST = 0.1  # settle time for the observer tests


@pytest.mark.parametrize(
    "name",
    [
        ".x",
        ".hidden.json",
        "x.tmp",
        "x.json.tmp",
        "x.part",
        "x.json.part",
        "x.crdownload",
        "~x",
        "~$book.csv",
        ".",
    ],
)
def test_ignored_names(name: str) -> None:
    assert ignored(name)


@pytest.mark.parametrize(
    "name",
    [
        "x.json",
        "comments.jsonl",
        "a.csv",
        "x.partial",
        "x.tmp.json",
        "a~b.json",
        "x.part.json",
        "x",
        "x.crdownload.json",
        "ünïcode 😂.json",
    ],
)
def test_normal_names_are_not_ignored(name: str) -> None:
    assert not ignored(name)


class Clock:
    """The watcher's monotonic clock, moved by hand. On real time, a settle test fails when a
    loaded machine stalls it between two looks for longer than the test's margin."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock of :mod:`producer.watcher` only (the observers' threads keep real time)."""
    moved = Clock()
    monkeypatch.setattr(watcher, "time", moved)
    return moved


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "input"
    d.mkdir()
    return d.resolve()


def collect(c: Candidates, want: Path, timeout: float = 10.0) -> list[Path]:
    """Call settled() until ``want`` comes out; every path returned on the way."""
    seen: list[Path] = []
    deadline = time.monotonic() + timeout
    while want not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{want.name} never settled; got {seen}")
        seen += c.settled()
        time.sleep(0.02)
    return seen


# --- settling -----------------------------------------------------------------------------


def test_file_settles_only_after_size_and_mtime_stay_still(folder: Path, clock: Clock) -> None:
    f = folder / "a.json"
    f.write_text("[1")
    c = Candidates(folder, SETTLE)
    c.scan()
    t0 = clock.monotonic()
    assert c.settled() == []  # first sighting
    clock.sleep(0.4)
    with f.open("a") as out:  # still being written
        out.write(", 2")
    assert c.settled() == []  # changed: the clock starts again
    clock.sleep(0.4)  # 0.8 s since first seen, 0.4 s since the change
    assert clock.monotonic() - t0 >= SETTLE
    assert c.settled() == []
    clock.sleep(0.3)  # 0.7 s since the change
    assert c.settled() == [f.resolve()]
    assert c.settled() == []  # returned once
    clock.sleep(SETTLE + 0.1)
    assert c.settled() == []


def test_mtime_change_at_same_size_restarts_the_clock(folder: Path, clock: Clock) -> None:
    f = folder / "a.json"
    f.write_text("[1]")
    c = Candidates(folder, SETTLE)
    c.scan()
    assert c.settled() == []
    clock.sleep(0.4)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same size, new mtime
    assert c.settled() == []
    clock.sleep(0.4)
    assert c.settled() == []
    clock.sleep(0.3)
    assert c.settled() == [f.resolve()]


def test_zero_settle_time_still_needs_two_looks(folder: Path) -> None:
    f = folder / "a.json"
    f.write_text("[]")
    c = Candidates(folder, 0)
    c.nominate(f)
    assert c.settled() == []
    assert c.settled() == [f]


def test_deleted_before_settling_is_dropped(folder: Path, clock: Clock) -> None:
    f = folder / "a.json"
    f.write_text("[1]")
    st = f.stat()
    c = Candidates(folder, 0.2)
    c.scan()
    assert c.settled() == []
    f.unlink()
    assert c.settled() == []  # gone: dropped
    # The same bytes and mtime again, with no event and no scan: a dropped candidate stays gone
    # (had it been kept, it would now look settled).
    f.write_text("[1]")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    clock.sleep(0.3)
    assert c.settled() == []
    assert c.settled() == []


def test_scan_nominates_files_already_present(folder: Path, clock: Clock) -> None:
    for name in ("b.json", "a.csv", "c.jsonl"):
        (folder / name).write_text("[]")
    c = Candidates(folder, 0.1)
    assert c.settled() == []
    clock.sleep(0.15)
    assert c.settled() == []  # nothing nominated without a scan or an event
    c.scan()
    assert c.settled() == []
    clock.sleep(0.15)
    assert c.settled() == [(folder / n).resolve() for n in ("a.csv", "b.json", "c.jsonl")]


def test_scan_twice_does_not_duplicate_or_restart(folder: Path, clock: Clock) -> None:
    f = folder / "a.json"
    f.write_text("[]")
    c = Candidates(folder, 0.3)
    c.scan()
    assert c.settled() == []
    clock.sleep(0.35)
    c.scan()  # a periodic rescan while the file is pending
    assert c.settled() == [f.resolve()]


def test_hidden_and_temporary_files_are_never_returned(folder: Path, clock: Clock) -> None:
    names = [".x", "x.tmp", "x.part", "x.crdownload", "~x", ".x.json"]
    for name in names:
        (folder / name).write_text("[]")
    (folder / "ok.json").write_text("[]")
    c = Candidates(folder, 0.05)
    c.scan()
    for name in names:
        c.nominate(folder / name)  # as an event would
    got = c.settled()
    clock.sleep(0.1)
    got += c.settled()
    clock.sleep(0.1)
    got += c.settled()
    assert got == [(folder / "ok.json").resolve()]


def test_scan_of_missing_folder_does_not_raise(tmp_path: Path) -> None:
    c = Candidates(tmp_path / "nope", 0)
    c.scan()
    assert c.settled() == []


def test_subfolder_is_never_a_candidate(folder: Path, clock: Clock) -> None:
    """A folder inside the input folder is not a comment file: taking it would move it (and
    everything in it) to the failed folder."""
    (folder / "archive").mkdir()
    (folder / "archive" / "old.json").write_text("[]")
    (folder / "a.json").write_text("[]")
    c = Candidates(folder, 0.05)
    c.scan()
    got = c.settled()
    clock.sleep(0.1)
    got += c.settled()
    assert got == [(folder / "a.json").resolve()]


# --- real observers -------------------------------------------------------------------------


@pytest.fixture
def observe(folder: Path) -> Iterator[Callable[[bool], Candidates]]:
    observers: list[BaseObserver] = []

    def start(poll: bool) -> Candidates:
        c = Candidates(folder, FAST)
        observers.append(start_observer(c, poll=poll, poll_seconds=POLL))
        time.sleep(0.2)  # let inotify watches / the first polling snapshot be in place
        return c

    yield start
    for o in observers:
        o.stop()
    for o in observers:
        o.join(timeout=5)
        assert not o.is_alive()


MODES = pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])


@MODES
def test_observer_nominates_created_file(
    observe: Callable[[bool], Candidates], folder: Path, poll: bool
) -> None:
    c = observe(poll)
    f = folder / "new.json"
    f.write_text('[{"id": "1", "comment": "hi"}]')
    assert collect(c, f) == [f]


@MODES
def test_observer_nominates_file_moved_in_from_outside(
    observe: Callable[[bool], Candidates], folder: Path, tmp_path: Path, poll: bool
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    src = outside / "moved.json"
    src.write_text("[]")
    c = observe(poll)
    os.rename(src, folder / "moved.json")  # arrives as a create
    assert collect(c, folder / "moved.json") == [folder / "moved.json"]


@MODES
def test_observer_nominates_file_renamed_inside_folder(
    observe: Callable[[bool], Candidates], folder: Path, poll: bool
) -> None:
    c = observe(poll)
    part = folder / "x.part"
    part.write_text('[{"id": "1", "comment": "hi"}]')
    time.sleep(POLL * 4 + FAST)  # the polling snapshot now holds x.part: the rename is a move
    assert c.settled() == []  # the temporary name is never taken
    time.sleep(FAST + 0.05)
    assert c.settled() == []
    os.rename(part, folder / "x.json")
    assert collect(c, folder / "x.json") == [folder / "x.json"]


@MODES
def test_observer_ignores_temporary_and_hidden_files(
    observe: Callable[[bool], Candidates], folder: Path, poll: bool
) -> None:
    c = observe(poll)
    for name in (".x", "x.tmp", "x.part", "x.crdownload", "~x"):
        (folder / name).write_text("[]")
    time.sleep(POLL * 3)
    sentinel = folder / "z.json"
    sentinel.write_text("[]")
    got = collect(c, sentinel)
    time.sleep(FAST + 0.05)
    got += c.settled()
    assert got == [sentinel]


@MODES
def test_observer_ignores_files_in_subfolders(
    observe: Callable[[bool], Candidates], folder: Path, poll: bool
) -> None:
    sub = folder / "sub"
    sub.mkdir()
    c = observe(poll)
    (sub / "inner.json").write_text("[]")
    (sub / "inner.part").write_text("[]")
    os.rename(sub / "inner.part", sub / "renamed.json")
    time.sleep(POLL * 4)
    sentinel = folder / "z.json"
    sentinel.write_text("[]")
    got = collect(c, sentinel)
    time.sleep(FAST + 0.05)
    got += c.settled()
    assert got == [sentinel]


@MODES
def test_observer_ignores_file_moved_out_of_folder(
    observe: Callable[[bool], Candidates], folder: Path, tmp_path: Path, poll: bool
) -> None:
    f = folder / "leaving.json"
    f.write_text("[]")
    c = observe(poll)
    os.rename(f, tmp_path / "leaving.json")
    time.sleep(POLL * 4)
    sentinel = folder / "z.json"
    sentinel.write_text("[]")
    got = collect(c, sentinel)
    assert got == [sentinel]


def test_reading_the_folders_files_wakes_no_handler(
    observe: Callable[[bool], Candidates], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inotify reports every open and close of a file it watches; the producer's own check
    and the assembly read each file several times, and the rules use none of those events,
    so the kernel is asked not to send them. Writing still arrives."""
    f = folder / "read.json"
    f.write_text("[]")
    seen: list[str] = []
    original = Candidates.dispatch
    monkeypatch.setattr(
        Candidates, "dispatch", lambda self, e: (seen.append(type(e).__name__), original(self, e))
    )
    c = observe(False)
    for _ in range(5):
        f.read_bytes()
    time.sleep(0.5)
    assert seen == []
    with f.open("a") as out:
        out.write(" ")
    assert collect(c, f) == [f]
    assert "FileModifiedEvent" in seen and "FileClosedEvent" in seen
