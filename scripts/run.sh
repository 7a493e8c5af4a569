#!/usr/bin/env bash
# Runs the four services in the foreground against the local infrastructure (`make up`), with
# config/local.toml. Ctrl-C (or SIGTERM) stops them all gracefully.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$RELANCE_ROOT"

target_dir=${CARGO_TARGET_DIR:-$RELANCE_ROOT/target}
export RELANCE_ENV=${RELANCE_ENV:-local}
export RELANCE_CONFIG_DIR=${RELANCE_CONFIG_DIR:-$RELANCE_ROOT/config}

pids=()
stop_all() {
    trap - INT TERM
    log "Stopping the services"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
    exit 0
}
trap stop_all INT TERM

for service in ingestor scheduler sender tracker; do
    "$target_dir/debug/$service" &
    pids+=($!)
done
log "Running ingestor, scheduler, sender and tracker; ops endpoints on 127.0.0.1:9101-9104. Ctrl-C stops them."
# If any service exits by itself, stop the others.
wait -n
log "A service exited; stopping the others"
stop_all
