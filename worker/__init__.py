"""GPU workers: ``celery -A worker worker -c 1``. Importing this package does not import torch."""

from worker.app import app

__all__ = ["app"]
