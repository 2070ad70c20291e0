"""Fixtures of the producer's unit tests: a :class:`~tests.producer.rig.Rig` on a real
redis-server and real folders, with the calling shell's ``EMOTIONS_*`` variables removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stack import RedisServer
from tests.producer.rig import Rig, clear_env, make_rig


@pytest.fixture
def rig(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    for key in clear_env():
        monkeypatch.delenv(key)
    r = make_rig(tmp_path / "rig", redis_server.url)
    yield r
    r.close()
