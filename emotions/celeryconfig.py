"""Celery configuration derived from :class:`~emotions.settings.Settings`, for every process.

Producer, workers and tools each build their own app from their own settings object
(:func:`make_app`), so a command-line flag given to one process is what that process uses:
no process ever rebuilds settings from the environment behind its caller's back.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from emotions.constants import (
    APP_NAME,
    ASSEMBLE_TASK,
    CHUNK_CONTENT_TYPE,
    CLASSIFY_TASK,
    INFERENCE_QUEUE,
    QUEUES,
    RESULTS_QUEUE,
)
from emotions.messages import register_serializer
from emotions.redisfaults import register_transport
from emotions.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; every choice here protects against a named fault."""
    # redis:// and rediss:// brokers get kombu's Redis transport, except that Redis refusing
    # writes (OOM at maxmemory, MISCONF, READONLY, NOREPLICAS, LOADING) is a lost connection:
    # Celery reconnects and retries instead of the worker's main process exiting.
    register_transport()
    register_serializer()
    transport = {
        # An unacknowledged chunk (its worker died) is redelivered after this long.
        "visibility_timeout": settings.visibility_timeout,
        # kombu sweeps for such chunks only every interval x throttle seconds (100 s by
        # default); sweep every few seconds so redelivery follows the timeout closely.
        "unacked_restore_interval": min(10, max(1, settings.visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
        # Reconnect instead of dying when Redis restarts.
        "retry_on_timeout": True,
        "health_check_interval": 10,
    }
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.backend_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # keep trying while Redis is down
        # Publishing (chunks, assemblies, retries) rides out a Redis restart of ~1 minute.
        "task_publish_retry_policy": {
            "max_retries": 30,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 3,
        },
        # JSON only: a pickled message could run code on the GPU nodes. Chunk messages are
        # JSON written by orjson (emotions.messages), under their own content type.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json", CHUNK_CONTENT_TYPE],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        # ML workers: one chunk at a time, acknowledged only when done, requeued if the
        # process running it dies (OOM killer, SIGKILL).
        "worker_prefetch_multiplier": 1,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_time_limit": settings.task_time_limit,
        # The soft limit raises inside the task first, so it fails (and is retried) cleanly.
        "task_soft_time_limit": settings.task_time_limit - min(30, settings.task_time_limit // 10),
        # Chunk results live in our own job store; Celery's results would only pile up.
        "task_ignore_result": True,
        "result_expires": settings.result_ttl,
        # Monitoring without Flower having to switch events on.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "task_default_queue": INFERENCE_QUEUE,
        # One direct exchange per queue: a message can only ever land in the queue it names.
        "task_queues": tuple(Queue(q, Exchange(q), routing_key=q) for q in QUEUES),
        "task_routes": {
            CLASSIFY_TASK: {"queue": INFERENCE_QUEUE},
            ASSEMBLE_TASK: {"queue": RESULTS_QUEUE},
        },
        # Loading a 700 MB model in a fresh pool child takes far longer than Celery's 4 s.
        "worker_proc_alive_timeout": settings.model_load_timeout,
        # A chunk running while Redis restarts finishes and stores its result (the job store
        # client retries); if its ack is lost, the redelivered copy is dropped as a duplicate.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": True,
    }


# The producer publishes from a loop that must notice a Redis outage within seconds (and stay
# stoppable); it retries the whole step itself, so one publish gives up quickly.
SENDER_PUBLISH_RETRY = {
    "max_retries": 2,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 1,
}


def make_app(settings: Settings) -> Celery:
    """An app for a process that only sends tasks, by name (no task imports), from its own
    settings; its publishing gives up within seconds when Redis is down."""
    app = Celery(APP_NAME, set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.update(
        task_publish_retry_policy=SENDER_PUBLISH_RETRY,
        broker_connection_timeout=3,
        broker_transport_options={
            **app.conf.broker_transport_options,
            "socket_connect_timeout": 3,
            "socket_timeout": 5,
            # kombu publishes a batch (the producer's feed) in one pipeline only if redis-py
            # would not replay it on a timeout; the producer retries the whole step itself, and
            # a chunk sent twice is skipped by the worker that finds its labels stored.
            "retry_on_timeout": False,
        },
    )
    return app
