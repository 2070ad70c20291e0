"""Files still being written, with the real producer and a real worker: a writer process keeps
its JSON Lines file open and appends to it with pauses far longer than the settle time (each
pause ends mid-record, as a buffered writer's flush does), like youtube-comment-downloader
waiting on the network. The file must not be taken, failed or moved meanwhile, and its output
must hold every line exactly once.

Each pause is proven: the file's size and mtime stay the same for several settle times while
the writer process holds it open (read from ``/proc``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest

from harness.procs import wait_for
from harness.stack import Stack, write_json
from harness.writer import SlowWriter
from tests.services import TEST_ENV

pytestmark = pytest.mark.slow

SETTLE = float(TEST_ENV["EMOTIONS_SETTLE_SECONDS"])
PAUSE = 5 * SETTLE
LINES = [{"cid": f"c{i}", "text": f"comment {i} 😂", "votes": str(i)} for i in range(30)]


def pieces(parts: int = 4) -> list[bytes]:
    """The file's bytes in ``parts`` pieces, each but the last ending in the middle of a line."""
    data = b"".join(orjson.dumps(line) + b"\n" for line in LINES)
    cuts = [len(data) * k // parts for k in range(1, parts)]
    assert all(data[cut - 1 : cut] != b"\n" for cut in cuts)
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def cut_line(head: bytes) -> int:
    """The line number of the unfinished line at the end of ``head``."""
    return head.count(b"\n") + 1


@pytest.fixture
def writer(stack: Stack) -> Iterator[SlowWriter]:
    w = SlowWriter(stack.input / "live.jsonl")
    yield w
    w.kill()


def pause_while_open(stack: Stack, writer: SlowWriter, seconds: float = PAUSE) -> None:
    """Let ``seconds`` pass with the file open and unchanged, and check it was left alone."""
    path = writer.path
    before = path.stat()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        assert writer.holds_open()
        assert path.exists() and not (stack.failed / path.name).exists()
        time.sleep(0.1)
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert seconds > 4 * SETTLE
    assert not (stack.output / "live.json").exists()


def assert_every_line_once(stack: Stack) -> None:
    records = stack.output_records("live")
    assert [(r["id"], r["comment"]) for r in records] == [(x["cid"], x["text"]) for x in LINES]
    assert not list(stack.failed.iterdir())


def test_daemon_leaves_a_file_alone_until_its_writer_closes_it(
    stack: Stack, writer: SlowWriter
) -> None:
    stack.start_worker("w1")
    stack.start_producer()
    wait_for(lambda: "watching" in stack.log("producer"), 30, "the producer to watch")
    *first, last = pieces()
    for piece in first:
        writer.write(piece)
        pause_while_open(stack, writer)
    assert "file=live.jsonl" not in stack.log("producer")  # never even read
    writer.write(last)
    writer.close()
    wait_for(lambda: (stack.output / "live.json").exists(), 60, "the output after the close")
    assert_every_line_once(stack)
    log = stack.log("producer")
    assert log.count("file=live.jsonl event=enqueued") == 1
    assert "event=incomplete" not in log


def test_once_waits_for_a_file_being_written_when_it_starts(
    stack: Stack, writer: SlowWriter
) -> None:
    """Present at the start, the file sent no event yet: the settle rule takes it and its
    unfinished last line defers it (not failed); the writer's next write marks it as being
    written, and from then on it waits for the close, however long the pause."""
    write_json(stack.input / "ready.json", [{"id": "r", "comment": "already complete"}])
    *first, last = pieces(3)
    writer.write(first[0])
    stack.start_worker("w1")
    once = stack.start_producer("--once", EMOTIONS_INCOMPLETE_SECONDS="30")
    wait_for(lambda: (stack.output / "ready.json").exists(), 60, "the complete file's output")
    assert "file=live.jsonl event=incomplete" in stack.log("producer")
    assert once.poll() is None  # still waiting for live.jsonl
    writer.write(first[1])
    pause_while_open(stack, writer)
    writer.write(last[:-5])
    pause_while_open(stack, writer)
    assert once.poll() is None
    writer.write(last[-5:])
    writer.close()
    assert once.wait(timeout=120) == 0, stack.log("producer")
    assert_every_line_once(stack)
    log = stack.log("producer")
    assert log.count("file=live.jsonl event=incomplete") == 1  # never read while open again
    assert log.count("file=live.jsonl event=enqueued") == 1


def test_polling_reads_a_cut_short_file_defers_it_and_takes_it_complete(
    stack: Stack, writer: SlowWriter
) -> None:
    """``--poll`` (network mounts): no close events, so the settle rule takes the file during
    a pause; its unfinished last line makes it incomplete, not failed, and the rest of it is
    read once written."""
    stack.start_worker("w1")
    stack.start_producer("--poll", EMOTIONS_INCOMPLETE_SECONDS="30")
    wait_for(lambda: "watching" in stack.log("producer"), 30, "the producer to watch")
    *first, last = pieces(2)
    writer.write(first[0])
    deferred = "file=live.jsonl event=incomplete"
    wait_for(lambda: deferred in stack.log("producer"), 30, "the cut-short file to be deferred")
    line = cut_line(first[0])
    assert f"live.jsonl line {line}: the last line is an unfinished record" in stack.log("producer")
    pause_while_open(stack, writer)  # deferred: not failed, not moved
    writer.write(last)
    writer.close()
    wait_for(lambda: (stack.output / "live.json").exists(), 60, "the output once complete")
    assert_every_line_once(stack)


def test_once_fails_a_file_that_stays_cut_short(stack: Stack) -> None:
    """A writer that died mid-record: read, deferred, read again after the incomplete time
    unchanged, failed with a report saying the last record is truncated; ``--once`` ends."""
    path = stack.input / "dead.jsonl"
    path.write_bytes(b"".join(pieces(2)[:1]))
    t0 = time.monotonic()
    done = stack.run_producer("--once", EMOTIONS_INCOMPLETE_SECONDS="2", timeout=60)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - t0 >= 2
    assert "file=dead.jsonl event=incomplete" in done.stderr
    report = orjson.loads((stack.failed / "dead.jsonl.error.json").read_bytes())
    assert report["truncated"] is True
    line = cut_line(pieces(2)[0])
    assert report["error"].startswith(f"dead.jsonl line {line}: the last line is an unfinished ")
    assert (
        "still so after 2 s without any change, so its last record is truncated"
        in (report["error"])
    )
    assert not path.exists() and (stack.failed / "dead.jsonl").exists()
    assert not (stack.output / "dead.json").exists()
