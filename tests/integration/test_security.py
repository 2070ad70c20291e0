"""Security with real processes: JSON-only messages, masked secrets, names and links that
cannot escape the folders, and size limits that fail cleanly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from celery import Celery

from emotions.constants import CLASSIFY_TASK, INFERENCE_QUEUE
from harness.procs import wait_for
from harness.stack import RedisServer, Stack, write_json
from tests.services import make_stack

pytestmark = pytest.mark.slow


class Exploit:
    """Unpickling this runs code: what a pickle-accepting worker would execute."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.target}",))


def test_pickled_message_is_rejected_not_executed(stack: Stack) -> None:
    stack.start_worker("w1")
    pwned = stack.root / "pwned"
    sender = Celery(broker=stack.redis.url)
    sender.conf.accept_content = ["json", "pickle"]  # an attacker's client, not ours
    sender.send_task(
        CLASSIFY_TASK, args=[Exploit(pwned)], queue=INFERENCE_QUEUE, serializer="pickle"
    )
    wait_for(
        lambda: "ContentDisallowed" in stack.log("w1") or "disallowed" in stack.log("w1"),
        30,
        "the worker to refuse the pickled message",
    )
    assert not pwned.exists()
    # The worker is still healthy and serves JSON messages.
    write_json(stack.input / "after.json", [{"id": "1", "comment": "still working"}])
    assert stack.run_producer("--once").returncode == 0


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis-auth", password="s3cr3t-Pa55")
    server.start()
    yield server
    server.stop()


def test_password_in_url_works_and_is_never_logged(
    tmp_path: Path, locked_redis: RedisServer, bert_model: Path
) -> None:
    stack = make_stack(tmp_path / "stack", locked_redis, bert_model)
    try:
        stack.start_worker("w1")
        write_json(stack.input / "p.json", [{"id": "1", "comment": "hello"}])
        done = stack.run_producer("--once")
        assert done.returncode == 0, done.stderr
        assert stack.output_records("p")[0]["id"] == "1"
        logs = stack.log("w1") + done.stderr + done.stdout
        assert "redis://:**@127.0.0.1" in logs  # settings were logged, masked
        assert "s3cr3t-Pa55" not in logs
    finally:
        stack.stop_all(graceful=False)


def test_names_and_links_cannot_escape_the_folders(stack: Stack, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_bytes(orjson.dumps([{"id": "s", "comment": "private text"}]))
    (stack.input / "link.json").symlink_to(secret)
    write_json(stack.input / "bad\x07name\n.json", [{"id": "c", "comment": "control chars"}])
    write_json(stack.input / "..json", [{"id": "d", "comment": "dots"}])
    stack.start_worker("w1")
    assert stack.run_producer("--once").returncode == 1  # the link failed
    assert secret.read_bytes()  # untouched, and nothing of it was labelled
    report = orjson.loads((stack.failed / "link.json.error.json").read_bytes())
    assert "outside the input folder" in report["error"]
    assert (stack.failed / "link.json").is_symlink()  # the link moved, not its target
    assert stack.output_records("bad_name_")[0]["comment"] == "control chars"
    written = {p.name for p in stack.output.iterdir()}
    assert written == {"bad_name_.json"}
    assert (stack.input / "..json").exists()  # a hidden name: left alone, never read
    outside = {p.name for p in tmp_path.iterdir()}
    assert outside == {"secret.json", "stack", "redis"}


def test_oversized_inputs_fail_with_a_report(stack: Stack) -> None:
    (stack.input / "big.json").write_bytes(b"[" + b" " * 5000 + b"]")
    long_comment = [{"id": "l", "comment": "x" * 2_000}]
    write_json(stack.input / "long.json", long_comment)
    done = stack.run_producer(
        "--once", EMOTIONS_MAX_FILE_BYTES="4000", EMOTIONS_MAX_COMMENT_CHARS="1000"
    )
    assert done.returncode == 1
    big = orjson.loads((stack.failed / "big.json.error.json").read_bytes())
    assert "EMOTIONS_MAX_FILE_BYTES" in big["error"]
    long = orjson.loads((stack.failed / "long.json.error.json").read_bytes())
    assert "EMOTIONS_MAX_COMMENT_CHARS" in long["error"]
    assert not list(stack.output.iterdir())
