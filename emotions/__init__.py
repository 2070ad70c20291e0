"""What producer and workers share: settings, constants, errors, the job store, the messages,
file naming and atomic writes, output rendering and the Celery configuration.

Nothing here imports torch, transformers or the workers' Celery app, so the producer (and its
slim image) can import any of it.
"""
