"""The producer's command line: flags, a clear exit on bad settings, ``status`` and ``--once``
as real subprocesses against a real redis-server, and no torch in the producer process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from emotions.constants import FAILED, INFERENCE_QUEUE, QUEUED
from emotions.jobs import JobStore
from harness.procs import ROOT
from harness.stack import RedisServer
from producer.cli import main, parse_args
from producer.ledger import Entry, Ledger

# --- arguments ------------------------------------------------------------------------------


def test_defaults() -> None:
    a = parse_args([])
    assert (a.command, a.once, a.poll, a.no_progress) == ("run", False, False, False)
    for flag in ("input_dir", "output_dir", "failed_dir", "broker_url", "model", "chunk_size"):
        assert getattr(a, flag) is None  # None: the environment decides


def test_every_flag() -> None:
    a = parse_args(
        [
            "--once",
            "--poll",
            "--no-progress",
            "--input-dir",
            "in",
            "--output-dir",
            "out",
            "--failed-dir",
            "bad",
            "--broker-url",
            "redis://h:1/2",
            "--model",
            "some/model",
            "--chunk-size",
            "64",
        ]
    )
    assert (a.once, a.poll, a.no_progress) == (True, True, True)
    assert (a.input_dir, a.output_dir, a.failed_dir) == ("in", "out", "bad")
    assert (a.broker_url, a.model, a.chunk_size) == ("redis://h:1/2", "some/model", 64)


def test_status_command() -> None:
    assert parse_args(["status"]).command == "status"
    assert parse_args(["run", "--once"]).command == "run"


@pytest.mark.parametrize("argv", [["--chunk-size", "abc"], ["stats"], ["--bogus"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    assert "usage: emotions-producer" in capsys.readouterr().err


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("EMOTIONS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("EMOTIONS_INPUT_DIR", str(tmp_path / "in"))
    return monkeypatch


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EMOTIONS_BATCH_SIZE", "abc"),
        ("EMOTIONS_BROKER_URL", "http://x"),
        ("EMOTIONS_SETTLE_SECONDS", "-1"),
    ],
)
def test_invalid_setting_exits_2_naming_the_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], var: str, value: str
) -> None:
    clean_env.setenv(var, value)
    assert main(["--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emotions-producer: ")
    assert var in err
    assert "Traceback" not in err


def test_invalid_flag_value_names_the_setting(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--once", "--chunk-size", "0"]) == 2
    assert "EMOTIONS_CHUNK_SIZE" in capsys.readouterr().err


# --- real processes -------------------------------------------------------------------------


def env_for(redis_server: RedisServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONS_")}
    for sub in ("input", "output", "failed"):
        (tmp_path / sub).mkdir(exist_ok=True)
    env.update(
        PYTHONPATH=str(ROOT),
        EMOTIONS_BROKER_URL=redis_server.url,
        EMOTIONS_INPUT_DIR=str(tmp_path / "input"),
        EMOTIONS_OUTPUT_DIR=str(tmp_path / "output"),
        EMOTIONS_FAILED_DIR=str(tmp_path / "failed"),
        EMOTIONS_MODEL="m",
        EMOTIONS_CHUNK_SIZE="2",
    )
    return env


def producer(
    env: dict[str, str], *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_status_on_empty_ledger(redis_server: RedisServer, tmp_path: Path) -> None:
    done = producer(env_for(redis_server, tmp_path), "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "no files in flight",
        f"folder: {(tmp_path / 'input').resolve()}",
        "ledger: empty",
    ]


@pytest.mark.slow
def test_status_shows_chunks_of_files_in_flight(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis_server.client()
    try:
        store, ledger = (
            JobStore(client, 3600),
            Ledger(client, tmp_path / "input", tmp_path / "output"),
        )
        store.create("j1", name="a.json", model="m", digest="d", total=3, records=5)
        ledger.put("a.json", Entry("j1", "d", "m", QUEUED, 10, 1.0, records=5))
        assert store.store_part("j1", 1, [0, 27], ["l"] * 28) == 0
        store.create("j2", name="b.json", model="m", digest="d2")  # an unknown chunk count
        ledger.put("b.json", Entry("j2", "d2", "m", QUEUED, 10, 1.0))
        ledger.put("c.json", Entry("j3", "d3", "m", FAILED, 10, 1.0, error="bad"))
    finally:
        client.close()
    done = producer(env_for(redis_server, tmp_path), "status")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split("\t") == ["file", "progress", "comments", "age"]
    assert lines[1].split("\t")[:3] == ["a.json", "1/3 chunks", "5 comments"]
    assert lines[2].split("\t")[:3] == ["b.json", "0/? chunks", "? comments"]
    assert "c.json" not in done.stdout.split("ledger:")[0]  # failed: not in flight
    assert lines[-1] == "ledger: 1 failed, 2 queued"


@pytest.mark.slow
def test_once_on_empty_folder_exits_0_quickly(redis_server: RedisServer, tmp_path: Path) -> None:
    start = time.monotonic()
    done = producer(env_for(redis_server, tmp_path), "--once")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 15
    assert "0 file(s) finished, 0 failed" in done.stderr


@pytest.mark.slow
def test_once_with_only_a_bad_file_exits_non_zero(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = env_for(redis_server, tmp_path)
    (tmp_path / "input" / "bad.json").write_text("{oops")
    done = producer(env, "--once")
    assert done.returncode == 1, done.stderr
    assert (tmp_path / "failed" / "bad.json").exists()
    assert orjson.loads((tmp_path / "failed" / "bad.json.error.json").read_bytes())["error"]
    assert list((tmp_path / "output").iterdir()) == []


@pytest.mark.slow
def test_once_leaves_subfolders_of_the_input_folder_alone(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A folder inside the input folder (an archive, a download folder) is not a comment file:
    --once must neither fail because of it nor move it (and its files) to the failed folder."""
    env = env_for(redis_server, tmp_path)
    archive = tmp_path / "input" / "archive"
    archive.mkdir()
    (archive / "old.json").write_text('[{"id": "1", "comment": "x"}]')
    done = producer(env, "--once")
    assert done.returncode == 0, done.stderr
    assert (archive / "old.json").exists()
    assert list((tmp_path / "failed").iterdir()) == []


@pytest.mark.slow
def test_producer_never_imports_torch(redis_server: RedisServer, tmp_path: Path) -> None:
    env = env_for(redis_server, tmp_path)
    (tmp_path / "input" / "a.json").write_bytes(
        orjson.dumps([{"id": str(i), "comment": f"c{i}"} for i in range(3)])
    )
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from producer.cli import Producer, main, parse_args
        from emotions.celeryconfig import make_app
        from emotions.settings import load_settings

        parse_args(["--once", "--poll"])
        assert main(["status"]) == 0
        settings = load_settings()
        p = Producer(settings, make_app(settings))
        p.take([settings.input_dir / "a.json"])
        p.tracker.feed()
        assert len(p.tracker.jobs) == 1
        heavy = sorted(m for m in ("torch", "transformers", "tokenizers", "worker")
                       if m in sys.modules)
        assert not heavy, heavy
        print("OK")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "OK"
    client = redis_server.client()
    try:
        assert client.llen(INFERENCE_QUEUE) == 2  # the submission really went through
    finally:
        client.close()
