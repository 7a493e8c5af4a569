#!/usr/bin/env bash
# Stops exactly what scripts/up.sh started in this checkout (by pid file and data folder).
# Stopping what is not running is fine. Options: --purge (also delete the database cluster).
set -euo pipefail
. "$(dirname "$0")/env.sh"

purge=0
for argument in "$@"; do
    case "$argument" in
        --purge) purge=1 ;;
        *) die "unknown option $argument" ;;
    esac
done

if [ -f "$KAFKA_PID_FILE" ]; then
    pid=$(cat "$KAFKA_PID_FILE")
    if kill -0 "$pid" 2>/dev/null; then
        log "Stopping the Kafka broker (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$KAFKA_PID_FILE"
fi

data_dir=$(pg_data_dir)
if [ -f "$data_dir/postmaster.pid" ]; then
    log "Stopping PostgreSQL ($data_dir)"
    as_pg_user "$PG_BIN_DIR/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null || true
fi
if [ "$purge" -eq 1 ]; then
    log "Deleting the database cluster $data_dir"
    rm -rf "$data_dir"
fi
log "Down."
