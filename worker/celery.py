"""The workers' Celery application: ``celery -A worker worker`` finds ``worker.celery.app``.

Configuration is a promise (``add_defaults`` with a callable): the ``EMOTIONS_*`` settings are
read when Celery first needs them (worker start, first send), not when this module is
imported, so importing the app never fails on a bad environment and tests build their own.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from celery import Celery

from emotions.celeryconfig import celery_config
from emotions.constants import APP_NAME
from emotions.errors import ConfigurationError
from emotions.settings import Settings, load_settings


@functools.cache
def get_settings() -> Settings:
    """This worker process's settings, built once from the environment on first use."""
    return load_settings()


def _configure() -> dict[str, Any]:
    """Celery's configuration promise: one clear line, not a traceback, on a bad setting."""
    try:
        return celery_config(get_settings())
    except ConfigurationError as e:
        print(f"emotions: {e}", file=sys.stderr)
        raise SystemExit(2) from e


app = Celery(APP_NAME, include=["worker.tasks", "worker.lifecycle"])
app.add_defaults(_configure)
