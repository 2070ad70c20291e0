"""Shared fixtures: tiny offline models, a real redis-server, a pipeline stack in temp dirs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stack import RedisServer, Stack
from harness.standins import build_model
from tests.services import make_stack


@pytest.fixture(scope="session")
def bert_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT (WordPiece) GoEmotions stand-in, like the published v1.0."""
    return build_model(tmp_path_factory.mktemp("models") / "bert", "bert")


@pytest.fixture(scope="session")
def xlmr_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer XLM-RoBERTa (unigram, no token type ids) stand-in, like later versions."""
    return build_model(tmp_path_factory.mktemp("models") / "xlmr", "xlmr")


@pytest.fixture(params=["bert", "xlmr"])
def any_model(request: pytest.FixtureRequest) -> Path:
    """Each model family in turn."""
    return request.getfixturevalue(f"{request.param}_model")  # type: ignore[no-any-return]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, SIGKILLed afterwards: nothing of it is read again, and
    a SIGTERM waits for Redis's next timer tick (up to 0.1 s), in hundreds of tests."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture
def stack(tmp_path: Path, redis_server: RedisServer, bert_model: Path) -> Iterator[Stack]:
    """Folders + Redis + model for one test; every process it starts is killed afterwards (the
    test is over: a graceful stop would only cost seconds per worker)."""
    s = make_stack(tmp_path / "stack", redis_server, bert_model)
    yield s
    s.stop_all(graceful=False)
