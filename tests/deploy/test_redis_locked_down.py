"""The locked-down Redis of docs/operations-deploy.md runs the whole pipeline: TLS only
(``rediss://`` with the CA's certificate), the default user off, and one ACL user without the
dangerous commands (FLUSHALL, CONFIG, KEYS, ...). A file goes through, ``status`` and
``inspect`` work, and the password appears in no log."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.procs import ROOT, spawn, wait_for
from harness.stack import RedisServer, Stack, write_json
from tests.services import make_stack

pytestmark = pytest.mark.slow  # needs the openssl command (Debian's openssl) for certificates

USER, PASSWORD = "emotions", "Acl-pass-7f3c91"
# The ACL rules the operations doc gives, word for word.
ACL = [
    "--user",
    "default",
    "off",
    "--user",
    USER,
    "on",
    f">{PASSWORD}",
    "~*",
    "&*",
    "+@all",
    "-@dangerous",
]


def make_certificates(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1; the CA's certificate path."""
    folder.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=emotions-test-ca",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
    )
    return folder / "ca.crt"


class LockedRedis(RedisServer):
    """redis-server on a TLS port only, whose only user is the pipeline's ACL user."""

    def __init__(self, directory: Path, certs: Path) -> None:
        super().__init__(directory)
        self.certs = certs

    @property
    def url(self) -> str:
        return (
            f"rediss://{USER}:{PASSWORD}@127.0.0.1:{self.port}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={self.certs / 'ca.crt'}"
        )

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        cmd = [
            binary,
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(self.certs / "redis.crt"),
            "--tls-key-file",
            str(self.certs / "redis.key"),
            "--tls-ca-cert-file",
            str(self.certs / "ca.crt"),
            "--tls-auth-clients",
            "no",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            *ACL,
        ]
        self.proc = spawn(cmd, self.dir / "redis.log")
        wait_for(self._pings, 10, f"redis-server to accept TLS connections\n{self.dir}/redis.log")


@pytest.fixture
def locked(tmp_path: Path, bert_model: Path) -> Iterator[Stack]:
    make_certificates(tmp_path / "certs")
    server = LockedRedis(tmp_path / "redis", tmp_path / "certs")
    server.start()
    stack = make_stack(tmp_path / "stack", server, bert_model)
    yield stack
    stack.stop_all(graceful=False)
    server.stop()


def test_only_the_acl_user_over_tls_gets_in_and_it_cannot_flush(locked: Stack) -> None:
    client = locked.redis.client()
    assert client.ping()
    for command in (
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
        ("REPLICAOF", "NO", "ONE"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    no_retry = Retry(NoBackoff(), 0)
    anonymous = locked.redis.url.replace(f"{USER}:{PASSWORD}@", "")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(anonymous, retry=no_retry).ping()
    plain = f"redis://{USER}:{PASSWORD}@127.0.0.1:{locked.redis.port}/0"
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(plain, retry=no_retry, socket_timeout=2).ping()
    unverified = locked.redis.url.split("?")[0] + "?ssl_cert_reqs=required"  # no CA given
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis.from_url(unverified, retry=no_retry).ping()


def test_pipeline_runs_on_the_locked_down_redis(locked: Stack) -> None:
    records = [{"id": f"r{i}", "comment": f"so good {i}"} for i in range(20)]
    write_json(locked.input / "locked.json", records)
    locked.start_worker("w1")

    done = locked.run_producer("--once")
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in locked.output_records("locked")] == [r["id"] for r in records]

    status = locked.run_producer("status")
    assert status.returncode == 0 and "1 done" in status.stdout, status.stdout + status.stderr
    # Remote control (what Flower's /api/workers uses) goes through the same user and TLS.
    ping = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "inspect", "ping", "-t", "3"],
        cwd=ROOT,
        env=locked.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr

    # The password travels in the URL and never into a log.
    logs = locked.log("w1") + done.stdout + done.stderr + status.stdout + ping.stdout + ping.stderr
    assert PASSWORD not in logs
    assert "NOPERM" not in logs and "no permissions" not in logs.lower()
