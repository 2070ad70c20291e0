#!/usr/bin/env bash
# Idempotent set-up of a Debian/Ubuntu machine: redis-server, .venv, torch, the project.
# Used by scripts/run-local.sh (the README's run command) and scripts/test.sh (CI).
#
# Knobs: PYTHON (python3); EMOTIONS_TORCH_VERSION (2.13.0); EMOTIONS_TORCH_INDEX (unset: PyPI's
# build, CUDA-enabled on Linux; https://download.pytorch.org/whl/cpu gives a much smaller
# CPU-only build for machines without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${EMOTIONS_TORCH_VERSION:-2.13.0}"
say() { printf 'setup: %s\n' "$*"; }

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    say "installing redis-server (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "setup: redis-server is missing; install it with: sudo apt-get install -y redis-server" >&2
    exit 1
  fi
  # The package may start its own service on 6379 without persistence; we run our own.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    say "disabling the distribution's redis-server service (no append-only file)"
    systemctl disable --now redis-server >/dev/null 2>&1 || sudo -n systemctl disable --now redis-server || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: Python 3.11 or newer is needed (set PYTHON=...)" >&2; exit 1; }
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
# torch first and pinned: a bare 'torch' requirement can pull a newer multi-GB build.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  say "installing torch==$TORCH_VERSION"
  .venv/bin/pip install -q "torch==$TORCH_VERSION" ${EMOTIONS_TORCH_INDEX:+--index-url "$EMOTIONS_TORCH_INDEX"}
fi
.venv/bin/pip install -q -e ".[dev]"
mkdir -p data/input data/output data/failed data/redis
