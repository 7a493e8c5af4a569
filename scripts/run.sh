#!/usr/bin/env bash
# Runs the four services in the foreground against the local infrastructure (`make up`), with
# config/local.toml. Ctrl-C (or SIGTERM) stops them all gracefully.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$RELANCE_ROOT"

# The same target folder as the Makefile's, whether or not this runs under make.
target_dir=${CARGO_TARGET_DIR:-${RELANCE_CACHE_DIR:-$HOME/.cache/relance}/target}
export RELANCE_ENV=${RELANCE_ENV:-local}
export RELANCE_CONFIG_DIR=${RELANCE_CONFIG_DIR:-$RELANCE_ROOT/config}

pids=()
stop_all() {
    local status=${1:-0}
    trap - INT TERM
    log "Stopping the services"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait || true
    exit "$status"
}
trap 'stop_all 0' INT TERM

for service in ingestor scheduler sender tracker; do
    [ -x "$target_dir/debug/$service" ] ||
        die "$target_dir/debug/$service is missing: build first (make build, or make run)"
done

for service in ingestor scheduler sender tracker; do
    "$target_dir/debug/$service" &
    pids+=($!)
done
log "Running ingestor, scheduler, sender and tracker; ops endpoints on 127.0.0.1:9101-9104. Ctrl-C stops them."
# If any service exits by itself, stop the others and fail with its status.
status=0
wait -n || status=$?
log "A service exited (status $status); stopping the others"
stop_all "$(( status == 0 ? 1 : status ))"
