# syntax=docker/dockerfile:1
# GPU worker: `celery -A worker worker -c 1 -Q inference`, one container per GPU.
#
#   docker build -f docker/worker.Dockerfile -t youtube-emotions-worker .
#   docker build -f docker/worker.Dockerfile --build-arg PREFETCH_MODEL=AnasAlokla/multilingual_go_emotions \
#       -t youtube-emotions-worker .          # model baked into the image: no download at start
#
# Base: NVIDIA's CUDA image (cudart and the NVIDIA_* settings the container toolkit reads).
# torch's Linux wheels bring their own cuBLAS/cuDNN, so the small `base` flavour is enough;
# what the container needs from the host is the NVIDIA driver (NVIDIA Container Toolkit)
# and a GPU reservation (see compose.yaml).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
# Empty: PyPI's default (CUDA) build. e.g. https://download.pytorch.org/whl/cu128 to pick one.
ARG TORCH_INDEX_URL=
# A hub id to download into the image at build time (empty: downloaded on first start into
# the HF_HOME volume instead).
ARG PREFETCH_MODEL=

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/opt/hf \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    EMOTIONS_DEVICE=cuda

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && useradd --create-home --uid 10001 app \
    && mkdir -p "$HF_HOME" && chown app "$HF_HOME"

# torch first, in its own layer: it is most of the image and changes least.
RUN pip install "torch==${TORCH_VERSION}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

WORKDIR /app
COPY pyproject.toml README.md ./
COPY emotions ./emotions
COPY worker ./worker
COPY producer ./producer
RUN pip install ".[worker]"

USER app
RUN if [ -n "$PREFETCH_MODEL" ]; then \
        python -c 'import sys; from huggingface_hub import snapshot_download; \
snapshot_download(sys.argv[1], ignore_patterns=["*.h5", "*.msgpack", "*.onnx", "onnx/*", \
"*.ot", "*.tflite", "tf_model*", "flax_model*", "rust_model*"])' "$PREFETCH_MODEL"; \
    fi

# A model baked in above is found in HF_HOME under its hub id (give the same EMOTIONS_MODEL
# to the producer and the workers); set HF_HUB_OFFLINE=1 to never call the hub at start.
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "worker", "worker", "-c", "1", "-Q", "inference", "-n", "gpu@%h", "-l", "INFO"]
