"""GPU workers: ``celery -A worker worker -c 1`` (the app is ``worker.celery.app``).

This package holds what only workers run: the Celery app and its tasks, the worker's
lifecycle, the model holder and the inference engine. Importing it does not import torch;
the model and engine modules do, and only workers that consume the inference queue load them.
"""
