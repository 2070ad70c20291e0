#!/usr/bin/env bash
# redis-server for the local run (the Procfile's `redis`), made to stop after its clients.
#
#     scripts/redis-stops-last.sh --port 6379 --appendonly yes ...   # redis-server's arguments
#
# honcho stops every process of the Procfile at the same instant (SIGTERM to each process
# group) and SIGKILLs what is left 5 s later. If Redis went first, a worker could not hand the
# chunk in hand back to the queue, and that chunk would wait out EMOTIONS_VISIBILITY_TIMEOUT
# after the next start. So:
#   - redis-server runs in a session of its own: the group SIGTERM does not reach it;
#   - on SIGTERM or SIGINT this script waits until no other client is connected (at most
#     REDIS_STOP_WAIT seconds, default 4: inside honcho's 5), then stops Redis with SIGTERM,
#     Redis's own clean shutdown: the append-only file is fsynced (and the RDB snapshot
#     written where save points are set) before it exits;
#   - should this script be killed outright, the kernel sends redis-server SIGTERM
#     (parent-death signal, `setpriv --pdeathsig`), so it never outlives the run.
set -euo pipefail

wait_s="${REDIS_STOP_WAIT:-4}"
host=127.0.0.1
port=6379
prev=""
for arg in "$@"; do
    case "$prev" in
        --port) port="$arg" ;;
        --bind) host="$arg" ;;
        --requirepass) export REDISCLI_AUTH="$arg" ;;
    esac
    prev="$arg"
done

say() { printf 'redis-stops-last: %s\n' "$*"; }

# Connections other than the one asking (Redis 7 names it cmd=client|list, Redis 6 cmd=client).
others() {
    local list
    list="$(redis-cli -h "$host" -p "$port" client list 2>/dev/null)" || { echo 0; return; }
    grep -cvE ' cmd=client([|]list)? ' <<<"$list" || true
}

stop() {
    trap '' TERM INT
    local tries=$((wait_s * 10)) n
    n="$(others)"
    [[ $n -gt 0 ]] && say "waiting up to ${wait_s}s for $n client connection(s) to close"
    while [[ $n -gt 0 && $tries -gt 0 ]]; do
        sleep 0.1
        tries=$((tries - 1))
        n="$(others)"
    done
    if [[ $n -gt 0 ]]; then
        say "$n client connection(s) still open after ${wait_s}s; shutting down anyway"
    else
        say "no clients left; shutting down"
    fi
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid"
    exit $?
}

pdeathsig=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
    pdeathsig=(setpriv --pdeathsig TERM --)
fi
# Not a process group leader here, so setsid(1) does not fork: $! is redis-server's pid.
setsid "${pdeathsig[@]}" redis-server "$@" &
pid=$!
trap stop TERM INT
wait "$pid"  # returns early when a trapped signal arrives (then stop() exits)
