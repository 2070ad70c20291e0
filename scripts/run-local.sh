#!/usr/bin/env bash
# Set up and run the whole pipeline on one Debian/Ubuntu machine (a laptop or a one-GPU box):
#
#     scripts/run-local.sh            # everything in the Procfile
#     scripts/run-local.sh worker     # only some of its processes (honcho's own syntax)
#
# Safe to run again and again: each step is skipped when it is already done.
#   1. refuses early, with the fix, when there is no GPU and EMOTIONS_DEVICE is not "cpu"
#   2. scripts/setup.sh: redis-server, .venv, torch, the project (what CI runs too)
#   3. refuses when the Redis port is taken (the distribution's service has no persistence)
#   4. the data folders, then `exec honcho start` on the Procfile
#
# Ctrl-C stops everything in about 4 s (honcho: SIGTERM to all, SIGKILL 5 s later): the
# producer at once, the workers once the chunk in hand is finished or handed back to the queue
# (EMOTIONS_STOP_GRACE_SECONDS, 2), Redis last (scripts/redis-stops-last.sh). Run it again and
# the work goes on where it stopped.
#
# Knobs (environment): PYTHON (python3), EMOTIONS_TORCH_VERSION and EMOTIONS_TORCH_INDEX (see
# scripts/setup.sh), REDIS_PORT (6379), REDIS_STOP_WAIT (4), EMOTIONS_* (see the README),
# FLOWER_ADDRESS (127.0.0.1), FLOWER_BASIC_AUTH (user:password; Flower's HTTP API needs it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"

say() { printf '\033[1mrun-local:\033[0m %s\n' "$*"; }
die() { printf '\033[1;31mrun-local: %s\033[0m\n' "$*" >&2; exit "${2:-1}"; }

# --- 1. GPU or an explicit EMOTIONS_DEVICE=cpu --------------------------------------------
gpu=no
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    gpu=yes
fi
device="${EMOTIONS_DEVICE:-cuda}"
if [[ $gpu == no && $device != cpu ]]; then
    cat >&2 <<'EOF'

  ==========================================================================================
   No NVIDIA GPU found (nvidia-smi is missing or sees no device).

   The worker is GPU-only by default and would refuse to start (EMOTIONS_DEVICE=cuda), and
   honcho would then stop every other process with it. To run on the CPU (slow, but fine
   for a try-out or a small folder), say so explicitly and run this again:

       export EMOTIONS_DEVICE=cpu
       scripts/run-local.sh
  ==========================================================================================

EOF
    exit 2
fi
[[ $gpu == no ]] && say "no GPU: running the worker on the CPU because EMOTIONS_DEVICE=cpu"

# --- 2. redis-server, .venv, torch, the project (the same set-up CI uses) -------------------
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$VENV/bin/activate"

# --- 3. a free port for our Redis (with persistence) ----------------------------------------
export REDIS_PORT="${REDIS_PORT:-6379}"
export EMOTIONS_BROKER_URL="${EMOTIONS_BROKER_URL:-redis://localhost:$REDIS_PORT/0}"
if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
    die "port $REDIS_PORT is already in use (the distribution's redis-server service?).
      Stop it:        sudo systemctl disable --now redis-server
      or use another: export REDIS_PORT=6380   (EMOTIONS_BROKER_URL follows it if unset)"
fi

# --- 4. folders, then every process of the Procfile ----------------------------------------
mkdir -p data/redis "${EMOTIONS_INPUT_DIR:-data/input}" "${EMOTIONS_OUTPUT_DIR:-data/output}" \
    "${EMOTIONS_FAILED_DIR:-data/failed}"
export FLOWER_ADDRESS="${FLOWER_ADDRESS:-127.0.0.1}"
say "input: ${EMOTIONS_INPUT_DIR:-data/input}  output: ${EMOTIONS_OUTPUT_DIR:-data/output}  " \
    "flower: http://$FLOWER_ADDRESS:${FLOWER_PORT:-5555}  (Ctrl-C stops everything)"
if [[ -z ${FLOWER_BASIC_AUTH:-} ]]; then
    say "Flower's HTTP API (/api/...) answers 401 without credentials: start with" \
        "FLOWER_BASIC_AUTH=user:password to use it (curl -u user:password ...)"
fi
exec honcho start -f "$ROOT/Procfile" "$@"
