"""emotions.settings and the Celery configuration derived from it; imports stay free of torch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from emotions.celeryconfig import celery_config
from emotions.constants import (
    ASSEMBLE_TASK,
    CHUNK_CONTENT_TYPE,
    CLASSIFY_TASK,
    INFERENCE_QUEUE,
    RESULTS_QUEUE,
)
from emotions.errors import ConfigurationError, PermanentError
from emotions.settings import Settings, load_settings, log_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from an environment without EMOTIONS_* variables."""
    for name in [k for k in os.environ if k.startswith("EMOTIONS_")]:
        monkeypatch.delenv(name)


def test_defaults() -> None:
    s = load_settings()
    assert s.batch_size == 16
    assert s.model == "AnasAlokla/multilingual_go_emotions"
    assert s.device == "cuda"
    assert s.broker_url == "redis://localhost:6379/0"
    assert s.result_backend == "" and s.backend_url == "redis://localhost:6379/0"
    assert s.max_length == 0  # the tokenizer's maximum
    assert s.token_budget == 1024  # measured default (bench/, README Performance)
    assert s.chunk_size == 512
    assert s.input_dir == Path("data/input")
    assert s.output_dir == Path("data/output")
    assert s.failed_dir == Path("data/failed")
    assert s.task_time_limit < s.visibility_timeout
    assert s.log_level == "INFO"
    assert s.stop_grace_seconds == 2.0  # with the hand-back, inside honcho's 5 s kill timeout


def test_environment_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "EMOTIONS_BROKER_URL": "redis://:pw@broker:6380/2",
        "EMOTIONS_RESULT_BACKEND": "rediss://backend:6381/3",
        "EMOTIONS_MODEL": "/models/go_emotions",
        "EMOTIONS_DEVICE": "cuda:1",
        "EMOTIONS_BATCH_SIZE": "32",
        "EMOTIONS_MAX_LENGTH": "128",
        "EMOTIONS_CHUNK_SIZE": "500",
        "EMOTIONS_VISIBILITY_TIMEOUT": "7200",
        "EMOTIONS_TASK_TIME_LIMIT": "3600",
        "EMOTIONS_INPUT_DIR": "/drive/in",
        "EMOTIONS_OUTPUT_DIR": "/drive/out",
        "EMOTIONS_FAILED_DIR": "/drive/failed",
        "EMOTIONS_SETTLE_SECONDS": "2.5",
        "EMOTIONS_OPEN_FILE_SECONDS": "7200",
        "EMOTIONS_INCOMPLETE_SECONDS": "600",
        "EMOTIONS_STOP_GRACE_SECONDS": "30",
        "EMOTIONS_LOG_LEVEL": "debug",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.broker_url == "redis://:pw@broker:6380/2"
    assert s.backend_url == "rediss://backend:6381/3"
    assert s.model == "/models/go_emotions"
    assert s.device == "cuda:1"
    assert (s.batch_size, s.max_length, s.chunk_size) == (32, 128, 500)
    assert (s.visibility_timeout, s.task_time_limit) == (7200, 3600)
    assert s.input_dir == Path("/drive/in") and isinstance(s.input_dir, Path)
    assert s.output_dir == Path("/drive/out") and s.failed_dir == Path("/drive/failed")
    assert s.settle_seconds == 2.5
    assert (s.open_file_seconds, s.incomplete_seconds) == (7200, 600)
    assert s.stop_grace_seconds == 30
    assert s.log_level == "DEBUG"


def test_cli_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTIONS_BATCH_SIZE", "32")
    monkeypatch.setenv("EMOTIONS_DEVICE", "cuda")
    s = load_settings(batch_size=8, device="cpu", model=None)  # None: flag not given
    assert (s.batch_size, s.device) == (8, "cpu")
    assert s.model == "AnasAlokla/multilingual_go_emotions"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EMOTIONS_BATCH_SIZE", "0"),
        ("EMOTIONS_BATCH_SIZE", "sixteen"),
        ("EMOTIONS_DEVICE", "gpu"),
        ("EMOTIONS_DEVICE", "cuda:x"),
        ("EMOTIONS_BROKER_URL", "amqp://guest@localhost//"),
        ("EMOTIONS_RESULT_BACKEND", "db+sqlite:///results.db"),
        ("EMOTIONS_MAX_LENGTH", "-1"),
        ("EMOTIONS_CHUNK_SIZE", "0"),
        ("EMOTIONS_VISIBILITY_TIMEOUT", "5"),
        ("EMOTIONS_LOG_LEVEL", "loud"),
        ("EMOTIONS_SETTLE_SECONDS", "soon"),
        ("EMOTIONS_OPEN_FILE_SECONDS", "0"),
        ("EMOTIONS_INCOMPLETE_SECONDS", "-1"),
        ("EMOTIONS_STOP_GRACE_SECONDS", "-1"),
    ],
)
def test_invalid_values_name_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert variable in str(info.value)
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize("limit", ["3600", "4000"])
def test_time_limit_not_below_visibility_timeout_is_rejected(
    limit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOTIONS_VISIBILITY_TIMEOUT", "3600")
    monkeypatch.setenv("EMOTIONS_TASK_TIME_LIMIT", limit)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "EMOTIONS_TASK_TIME_LIMIT" in str(info.value)
    assert "EMOTIONS_VISIBILITY_TIMEOUT" in str(info.value)


def test_time_limit_just_below_visibility_timeout_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EMOTIONS_VISIBILITY_TIMEOUT", "600")
    monkeypatch.setenv("EMOTIONS_TASK_TIME_LIMIT", "599")
    s = load_settings()
    assert (s.visibility_timeout, s.task_time_limit) == (600, 599)


@pytest.mark.parametrize(
    ("broker", "backend"),
    [
        ("redis://:s3cr3t-pw@redis.internal:6379/0", ""),
        ("redis://app:s3cr3t-pw@redis.internal:6379/0", "rediss://app:s3cr3t-pw@tls.host:6380/1"),
        ("rediss://:s3cr3t-pw@tls.host:6380/0?ssl_cert_reqs=required", ""),
        ("redis://localhost:6379/0", "rediss://default:s3cr3t-pw@tls.host:6380/1"),
    ],
)
def test_masked_hides_passwords(
    broker: str, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = load_settings(broker_url=broker, result_backend=backend)
    masked = s.masked()
    assert "s3cr3t-pw" not in json.dumps(masked, default=str)
    assert masked["broker_url"].split("://")[0] == broker.split("://")[0]
    assert ("redis.internal" in masked["broker_url"]) == ("redis.internal" in broker)
    if backend:
        assert "tls.host" in masked["result_backend"]
    with caplog.at_level(logging.INFO, logger="emotions.settings"):
        log_settings(s, "worker")
    assert caplog.records and "s3cr3t-pw" not in caplog.text
    # Masking is for display only: the settings still hold the real URL.
    assert "s3cr3t-pw" in s.broker_url + s.result_backend


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValidationError):
        s.batch_size = 64  # type: ignore[misc]
    assert s.batch_size == 16


def test_settings_are_read_when_built_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTIONS_BATCH_SIZE", "48")
    assert Settings().batch_size == 48
    monkeypatch.setenv("EMOTIONS_BATCH_SIZE", "24")
    assert load_settings().batch_size == 24


# --- Celery configuration ------------------------------------------------------------------


def test_celery_config_for_ml_workers() -> None:
    s = load_settings(
        visibility_timeout=1234,
        task_time_limit=600,
        model_load_timeout=900,
        broker_url="redis://:pw@h:6379/0",
    )
    conf = celery_config(s)
    assert conf["accept_content"] == ["json", CHUNK_CONTENT_TYPE]  # JSON both (no pickle)
    assert conf["result_accept_content"] == ["json"]
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["event_serializer"] == "json"
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] == 1234
    assert conf["task_time_limit"] == 600 < conf["broker_transport_options"]["visibility_timeout"]
    assert conf["worker_send_task_events"] is True
    assert conf["task_send_sent_event"] is True
    assert conf["broker_url"] == "redis://:pw@h:6379/0" == conf["result_backend"]
    # A model load takes far longer than Celery's 4 s for a new pool child.
    assert conf["worker_proc_alive_timeout"] == 900
    assert conf["task_routes"][CLASSIFY_TASK] == {"queue": INFERENCE_QUEUE}
    assert conf["task_routes"][ASSEMBLE_TASK] == {"queue": RESULTS_QUEUE}
    assert {q.name for q in conf["task_queues"]} == {INFERENCE_QUEUE, RESULTS_QUEUE}


def test_celery_config_follows_the_result_backend_setting() -> None:
    s = load_settings(broker_url="redis://a:6379/0", result_backend="redis://b:6379/1")
    assert celery_config(s)["result_backend"] == "redis://b:6379/1"


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIONS_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_app_reads_settings_from_the_environment_and_imports_no_torch() -> None:
    # worker.inference is the one module that needs torch (it runs inside pool children only).
    code = (
        "import sys, json\n"
        "import worker, worker.celery, worker.tasks, worker.lifecycle, worker.model\n"
        "import emotions.files, emotions.jobs, emotions.messages, emotions.settings\n"
        "from worker.celery import app\n"
        "c = app.conf\n"
        "print(json.dumps({'torch': 'torch' in sys.modules,\n"
        "  'transformers': 'transformers' in sys.modules,\n"
        "  'accept': list(c.accept_content),\n"
        "  'vt': c.broker_transport_options['visibility_timeout'],\n"
        "  'acks_late': c.task_acks_late, 'prefetch': c.worker_prefetch_multiplier,\n"
        "  'events': c.worker_send_task_events}))\n"
    )
    proc = _python(code, EMOTIONS_VISIBILITY_TIMEOUT="4321", EMOTIONS_BROKER_URL="redis://x:1/0")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "torch": False,
        "transformers": False,
        "accept": ["json", CHUNK_CONTENT_TYPE],
        "vt": 4321,
        "acks_late": True,
        "prefetch": 1,
        "events": True,
    }


def test_producer_imports_neither_torch_nor_the_workers_app() -> None:
    code = (
        "import sys, pkgutil, importlib\n"
        "import producer\n"
        "names = [m.name for m in pkgutil.walk_packages(producer.__path__, 'producer.')\n"
        "         if m.name != 'producer.__main__']\n"
        "for name in names: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in {'torch', 'transformers', 'tokenizers', 'worker'})\n"
        "assert 'producer.cli' in names and 'emotions.formats' in sys.modules, names\n"
        "print(len(names), bad)\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    count, bad = proc.stdout.split(" ", 1)
    assert int(count) >= 5
    assert bad.strip() == "[]"


def test_gpu_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.batch_size, s.rows_per_batch, s.cuda_graphs, s.tokenizer_threads) == (16, 16, True, 0)
    monkeypatch.setenv("EMOTIONS_BATCH_SIZE", "auto")
    monkeypatch.setenv("EMOTIONS_TOKEN_BUDGET", "16384")
    monkeypatch.setenv("EMOTIONS_CUDA_GRAPHS", "false")
    monkeypatch.setenv("EMOTIONS_TOKENIZER_THREADS", "4")
    s = load_settings()
    assert (s.batch_size, s.rows_per_batch, s.token_budget) == ("auto", None, 16384)
    assert (s.cuda_graphs, s.tokenizer_threads) == (False, 4)
    assert load_settings(batch_size="AUTO").batch_size == "auto"
    assert load_settings(batch_size="32").rows_per_batch == 32


@pytest.mark.parametrize("value", ["0", "4097", "big", "1.5", "-3"])
def test_batch_size_is_a_row_count_or_auto(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTIONS_BATCH_SIZE", value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid settings: EMOTIONS_BATCH_SIZE: Value error, must be a number of rows from 1 "
        "to 4096, or 'auto'"
    )


def test_auto_batches_need_a_token_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTIONS_BATCH_SIZE", "auto")
    monkeypatch.setenv("EMOTIONS_TOKEN_BUDGET", "0")
    with pytest.raises(ConfigurationError, match="EMOTIONS_TOKEN_BUDGET"):
        load_settings()
