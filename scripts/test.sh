#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, lint, types, then every test (slow ones too).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
