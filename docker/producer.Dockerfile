# syntax=docker/dockerfile:1
# Producer, results worker and Flower: no torch, no GPU, a few tens of MB of dependencies.
#
#   docker build -f docker/producer.Dockerfile -t youtube-emotions-producer .
#
# The same image runs `python -m producer`, `celery -A worker worker -c 1 -Q results` (the
# assembly of output files loads no model) and `celery -A worker flower`.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EMOTIONS_INPUT_DIR=/data/input \
    EMOTIONS_OUTPUT_DIR=/data/output \
    EMOTIONS_FAILED_DIR=/data/failed

RUN useradd --create-home --uid 10001 app \
    && mkdir -p /data/input /data/output /data/failed && chown -R app /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY emotions ./emotions
COPY worker ./worker
COPY producer ./producer
# The base package and Flower only: the [worker] extra (torch, transformers) stays out.
RUN pip install ".[flower]"

USER app
CMD ["python", "-m", "producer"]
