"""A producer's parts on a real redis-server and real folders, with no worker: the tests read
the queues directly (the chunk messages exactly as kombu left them) and play the worker's part
through the same job store calls a worker makes."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from celery import Celery

from emotions.celeryconfig import make_app
from emotions.constants import CHUNK_CONTENT_TYPE, CLASSIFY_TASK, INFERENCE_QUEUE, RESULTS_QUEUE
from emotions.jobs import GO, JobStore
from emotions.messages import send_assembly
from emotions.settings import Settings, load_settings
from harness.stack import Folders
from producer.daemon import Producer
from producer.failed import FailedFolder
from producer.ledger import Ledger
from producer.spool import Layout
from producer.submit import Submitted, Submitter

NAME = "comments.json"
LABELS = ["admiration", "joy", "neutral"]


def comments(n: int, tag: str = "c") -> list[dict[str, Any]]:
    return [{"id": f"{tag}{i}", "comment": f"{tag} comment {i} 😂"} for i in range(n)]


class KeptSubmitter(Submitter):
    """A submitter used without a tracker: it closes the spools of what it submitted itself,
    when the rig closes (a tracker's follows do that in the producer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layouts: list[Layout] = []

    def consider(self, path: Path) -> Submitted | None:
        submitted = super().consider(path)
        if submitted is not None and submitted.layout is not None:
            self.layouts.append(submitted.layout)
        return submitted

    def close(self) -> None:
        for layout in self.layouts:
            layout.close()


@dataclass
class Rig(Folders):
    """Folders, a Redis client, and every producer (or submitter) a test builds on them."""

    url: str
    client: redis.Redis
    store: JobStore
    ledger: Ledger
    apps: list[Celery] = field(default_factory=list)
    producers: list[Producer] = field(default_factory=list)
    submitters: list[Submitter] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "broker_url": self.url,
            "input_dir": self.input,
            "output_dir": self.output,
            "failed_dir": self.failed,
            "model": "m",
            "chunk_size": 2,
            **overrides,
        }
        return load_settings(**values)

    def submitter(self, **overrides: Any) -> Submitter:
        """A submitter alone, on this rig's store and ledger."""
        settings = self.settings(**overrides)
        submitter = KeptSubmitter(
            settings, self.store, self.ledger, FailedFolder(settings, self.ledger)
        )
        self.submitters.append(submitter)
        return submitter

    def producer(self, **overrides: Any) -> Producer:
        """A whole producer (its own connections, app, submitter, feeder and tracker), as
        ``python -m producer`` builds it; a second call is a restarted producer."""
        settings = self.settings(**overrides)
        app = make_app(settings)
        self.apps.append(app)
        p = Producer(settings, app)
        self.producers.append(p)
        return p

    def close(self) -> None:
        for submitter in self.submitters:
            submitter.close()
        for p in self.producers:
            p.tracker.close()
            p.store.r.close()
        for app in self.apps:
            app.close()
        self.client.close()

    def write(self, records: list[Any], name: str = NAME) -> Path:
        path = self.input / name
        path.write_bytes(json.dumps(records, ensure_ascii=False).encode())  # exact big ints
        return path

    def messages(self, queue: str) -> list[dict[str, Any]]:
        """The task messages waiting in ``queue``, oldest first (kombu LPUSHes, BRPOPs)."""
        out = []
        for raw in reversed(self.client.lrange(queue, 0, -1)):
            envelope = orjson.loads(raw)
            task = envelope["headers"]["task"]
            expected = CHUNK_CONTENT_TYPE if task == CLASSIFY_TASK else "application/json"
            assert envelope["content-type"] == expected
            assert envelope["properties"]["body_encoding"] == "base64"
            args, kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
            assert kwargs == {}
            out.append({"task": task, "args": args})
        return out

    def chunk_args(self) -> list[list[Any]]:
        """``[job, index, texts, model, name]`` of each chunk waiting, oldest first."""
        msgs = self.messages(INFERENCE_QUEUE)
        assert {m["task"] for m in msgs} <= {CLASSIFY_TASK}
        return [m["args"] for m in msgs]

    def sent(self, job: str) -> list[int]:
        """Indexes of the chunks of ``job`` waiting in the inference queue."""
        return [a[1] for a in self.chunk_args() if a[0] == job]

    def assemblies(self) -> list[list[Any]]:
        return [m["args"] for m in self.messages(RESULTS_QUEUE)]

    def jobs(self) -> set[str]:
        """Ids of every job Redis holds."""
        keys = self.client.keys("emotions:job:*")
        return {k.decode().split(":")[2] for k in keys}  # type: ignore[union-attr]

    def pop(self, n: int | None = None) -> list[list[Any]]:
        """Take up to ``n`` chunk messages off the inference queue, oldest first, as a worker
        does (their args); they are then running, not waiting."""
        taken: list[list[Any]] = []
        while n is None or len(taken) < n:
            raw = self.client.rpop(INFERENCE_QUEUE)
            if raw is None:
                break
            envelope = orjson.loads(raw)  # type: ignore[arg-type]
            taken.append(orjson.loads(base64.b64decode(envelope["body"]))[0])
        return taken

    def complete(self, args: list[Any], app: Celery | None = None) -> int:
        """Play a worker finishing one chunk: count its start, store a label per comment, and
        queue the assembly when told to (if ``app`` is given: a worker that did not die)."""
        job, index, texts, _model, name = args
        if self.store.begin(job, index, 5, {"error": "begun too often"}) != GO:
            return -9
        labels = [len(t) % len(LABELS) for t in texts]
        outcome = self.store.store_part(job, index, labels, LABELS)
        if outcome == 1 and app is not None:
            send_assembly(app, job, name)
        return outcome

    def work(self, app: Celery | None = None, n: int | None = None) -> list[int]:
        """Take and finish up to ``n`` chunks."""
        return [self.complete(args, app) for args in self.pop(n)]


def make_rig(root: Path, url: str) -> Rig:
    for sub in ("input", "output", "failed"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(url)
    return Rig(
        root, url, client, JobStore(client, 3600), Ledger(client, root / "input", root / "output")
    )


def clear_env() -> dict[str, str]:
    """The ``EMOTIONS_*`` variables of the calling shell, which must not change a test."""
    return {k: v for k, v in os.environ.items() if k.startswith("EMOTIONS_")}
