"""When a file counts as complete (producer.completion through producer.watcher.Candidates),
with real watchdog observers on a real folder: a file written to and not yet closed is left
alone however long it stays still (up to the open-file limit), a closed, moved-in or linked one
settles as before, polling (no close events) keeps the settle rule, and a file deferred for
reading as cut short comes back only after the incomplete time, then is given up.

Each "still" pause is measured and checked against the settle time while the file is open:
these tests would fail with the bare settle rule.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.observers.api import BaseObserver

from producer.completion import Limits, Pending
from producer.watcher import Candidates, start_observer

SETTLE = 0.2
PAUSE = 1.0  # five settle times: the bare settle rule would take a file within it
POLL = 0.1
LONG = 60.0  # a wait that no test lasts: a file put under it must not come out


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "input"
    d.mkdir()
    return d.resolve()


Start = Callable[..., Candidates]


@pytest.fixture
def observe(folder: Path) -> Iterator[Start]:
    observers: list[BaseObserver] = []

    def start(poll: bool = False, **limits: float) -> Candidates:
        c = Candidates(folder, SETTLE, **{"open_file_seconds": LONG, **limits})
        observers.append(start_observer(c, poll=poll, poll_seconds=POLL))
        time.sleep(0.2)  # inotify watch / first polling snapshot in place
        return c

    yield start
    for o in observers:
        o.stop()
    for o in observers:
        o.join(timeout=5)


def watch(c: Candidates, seconds: float) -> list[Path]:
    """Call settled() for ``seconds``; every path it returned."""
    got: list[Path] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got += c.settled()
        time.sleep(0.02)
    return got


def until(c: Candidates, want: Path, timeout: float = 5.0) -> float:
    """Call settled() until ``want`` comes out; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if want in c.settled():
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"{want.name} was never taken")


def still_while_watched(c: Candidates, path: Path, seconds: float) -> list[Path]:
    """Watch for ``seconds`` and prove the file did not change meanwhile (size and mtime), so
    that the pause really was longer than the settle time."""
    before = path.stat()
    t0 = time.monotonic()
    got = watch(c, seconds)
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert time.monotonic() - t0 >= seconds > 4 * SETTLE
    return got


# --- the rules alone --------------------------------------------------------------------------


def test_pending_waits_by_state() -> None:
    limits = Limits(settle=1, open_file=100, incomplete=10)
    p = Pending()
    assert p.look((5, 1.0), now=0) and not p.look((5, 1.0), now=0.5)
    assert not p.ready(0.9, limits) and p.ready(1.0, limits)
    p.writing = True
    assert not p.ready(99, limits) and p.ready(100, limits)
    p.writing, p.truncated = False, "cut"
    assert not p.ready(9.9, limits) and p.ready(10, limits)
    p.writing = True  # cut short, but still open for writing: waits for the close
    assert p.wait(limits) == 100
    assert p.look((6, 2.0), now=50) and p.truncated == "" and p.since == 50  # new data


# --- inotify: written and not closed -------------------------------------------------------------


def test_open_file_is_not_taken_while_still_then_taken_after_close(
    observe: Start, folder: Path
) -> None:
    c = observe()
    path = folder / "video.jsonl"
    with path.open("w") as f:
        f.write('{"cid": "a", "text": "one"}\n{"cid": "b", "te')  # a page, cut mid-record
        f.flush()
        assert still_while_watched(c, path, PAUSE) == []
        f.write('xt": "two"}\n')
        f.flush()
        assert still_while_watched(c, path, PAUSE) == []
        closed = time.monotonic()
    # Unchanged for longer than the settle time already: the close is all it waited for.
    assert until(c, path) >= closed
    assert watch(c, 3 * SETTLE) == []  # taken once


def test_created_file_waits_for_its_close_before_any_write(observe: Start, folder: Path) -> None:
    """The downloader creates its file before it has fetched the first page."""
    c = observe()
    path = folder / "video.json"
    with path.open("w"):
        assert still_while_watched(c, path, PAUSE) == []
    until(c, path)


def test_file_reopened_and_appended_waits_again(observe: Start, folder: Path) -> None:
    c = observe()
    path = folder / "video.jsonl"
    path.write_text('{"cid": "a", "text": "one"}\n')
    until(c, path)
    with path.open("a") as f:
        f.write('{"cid": "b", "text": "two"}\n')
        f.flush()
        assert still_while_watched(c, path, PAUSE) == []
    until(c, path)


def test_file_present_at_start_then_written_waits_for_close(observe: Start, folder: Path) -> None:
    path = folder / "video.jsonl"
    with path.open("w") as f:
        f.write('{"cid": "a", "text": "one"}\n')
        f.flush()
        c = observe()
        c.scan()  # no event yet: the settle rule is all there is...
        f.write('{"cid": "b", "text": "two"}\n')  # ...until the writer writes again
        f.flush()
        assert still_while_watched(c, path, PAUSE) == []
    until(c, path)


def test_writer_that_never_closes_is_taken_after_the_open_file_limit(
    observe: Start, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = observe(open_file_seconds=1.5)
    path = folder / "video.jsonl"
    with path.open("w") as f, caplog.at_level(logging.WARNING, logger="producer.watcher"):
        f.write('{"cid": "a", "text": "one"}\n')
        f.flush()
        written = time.monotonic()
        assert still_while_watched(c, path, PAUSE) == []
        taken = until(c, path)
        assert taken - written >= 1.5
    assert "file=video.jsonl event=still-open" in caplog.text


# --- inotify: complete files still settle ------------------------------------------------------


def test_moved_in_linked_and_touched_files_settle(
    observe: Start, folder: Path, tmp_path: Path
) -> None:
    """None of these was written in the folder: each comes out within the settle time, not the
    (here endless) open-file wait."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in ("moved.json", "linked.json", "target.json"):
        (outside / name).write_text("[]")
    written = folder / "written.json"
    written.write_text("[]")
    c = observe()
    c.scan()
    until(c, written)
    os.rename(outside / "moved.json", folder / "moved.json")
    os.link(outside / "linked.json", folder / "linked.json")
    os.symlink(outside / "target.json", folder / "symlink.json")
    os.utime(written)  # touch: attributes, not data
    os.chmod(written, 0o600)
    got = watch(c, 5 * SETTLE + 1)
    names = ["linked.json", "moved.json", "symlink.json", "written.json"]
    assert sorted(got) == [folder / name for name in names]


# --- polling: no close events --------------------------------------------------------------------


def test_polling_keeps_the_settle_rule_for_open_files(observe: Start, folder: Path) -> None:
    """Without close events a still file is taken by the settle rule even while open: the
    truncated last record then defers it (see below), it is not failed."""
    c = observe(poll=True)
    path = folder / "video.jsonl"
    with path.open("w") as f:
        f.write('{"cid": "a", "te')
        f.flush()
        assert path in watch(c, PAUSE + 4 * POLL)


# --- deferred: read as cut short ----------------------------------------------------------------


def test_deferred_file_comes_back_after_the_incomplete_time_then_is_given_up(
    folder: Path,
) -> None:
    path = folder / "cut.jsonl"
    path.write_text('{"cid": "a", "te')
    c = Candidates(folder, SETTLE, incomplete_seconds=1.5)
    c.scan()
    until(c, path)
    assert c.defer(path, "cut short")
    deferred = time.monotonic()
    assert path in c.pending()
    assert still_while_watched(c, path, PAUSE) == []
    back = until(c, path)
    assert back - deferred >= 1.5
    assert not c.defer(path, "cut short")  # unchanged since: give up
    assert path not in c.pending()


def test_deferred_file_that_changes_gets_the_settle_rule_again(folder: Path) -> None:
    path = folder / "cut.jsonl"
    path.write_text('{"cid": "a", "te')
    c = Candidates(folder, SETTLE, incomplete_seconds=LONG)
    c.scan()
    until(c, path)
    assert c.defer(path, "cut short")
    assert watch(c, 2 * SETTLE) == []
    with path.open("a") as f:
        f.write('xt": "done"}\n')
    until(c, path, timeout=5 * SETTLE + 1)  # not the endless incomplete wait
    assert c.defer(path, "cut short again")  # a new deferral, not a give-up: new data


def test_deferred_file_still_open_for_writing_waits_for_its_close(
    observe: Start, folder: Path
) -> None:
    """Read as cut short while its writer pauses (taken by a rescan before any event, say):
    it must not be given up while the writer still has it open."""
    path = folder / "video.jsonl"
    with path.open("w") as f:
        f.write('{"cid": "a", "text": "one"}\n{"cid": "b", ')
        f.flush()
        c = observe(incomplete_seconds=0.3)
        c.scan()
        until(c, path)
        f.write('"te')  # the writer goes on: an event says it is being written
        f.flush()
        time.sleep(0.2)
        assert c.defer(path, "cut short")
        assert still_while_watched(c, path, PAUSE) == []  # > the incomplete time, yet kept
        f.write('xt": "two"}\n')
    until(c, path)


def test_deferring_a_file_that_is_gone_is_no_failure(folder: Path) -> None:
    c = Candidates(folder, SETTLE)
    assert c.defer(folder / "gone.jsonl", "cut short")
    assert c.pending() == set()
