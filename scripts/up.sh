#!/usr/bin/env bash
# Starts the local infrastructure of this checkout, idempotently:
#   - the tansu Kafka broker on 127.0.0.1:$RELANCE_KAFKA_PORT, with relance's topics;
#   - a PostgreSQL 15 cluster in a project-local folder on 127.0.0.1:$RELANCE_PG_PORT, with the
#     relance database, migrated.
# Running it again, or while services run, changes nothing that is already up.
# Options: --no-migrate (skip the migrations, which need a cargo build).
set -euo pipefail
. "$(dirname "$0")/env.sh"

migrate=1
for argument in "$@"; do
    case "$argument" in
        --no-migrate) migrate=0 ;;
        *) die "unknown option $argument" ;;
    esac
done

start_kafka() {
    "$(dirname "$0")/install-tansu.sh"
    mkdir -p "$KAFKA_STATE_DIR"
    if [ -f "$KAFKA_PID_FILE" ] && kill -0 "$(cat "$KAFKA_PID_FILE")" 2>/dev/null; then
        log "Kafka broker already running (pid $(cat "$KAFKA_PID_FILE")) on $RELANCE_KAFKA_BOOTSTRAP"
    elif port_open "$RELANCE_KAFKA_PORT"; then
        log "Port $RELANCE_KAFKA_PORT is already served by a process this checkout did not start; using it as the broker"
    else
        rm -f "$KAFKA_PID_FILE"
        log "Starting the Kafka broker (tansu, memory storage) on $RELANCE_KAFKA_BOOTSTRAP"
        # setsid: the broker outlives this script and ignores the terminal's signals.
        setsid "$TANSU_BIN" broker \
            --listener-url "tcp://127.0.0.1:$RELANCE_KAFKA_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$RELANCE_KAFKA_PORT" \
            --storage-engine "memory://tansu/" \
            >>"$KAFKA_LOG" 2>&1 </dev/null &
        echo $! >"$KAFKA_PID_FILE"
        for _ in $(seq 1 100); do
            port_open "$RELANCE_KAFKA_PORT" && break
            kill -0 "$(cat "$KAFKA_PID_FILE")" 2>/dev/null || die "the broker exited; see $KAFKA_LOG"
            sleep 0.1
        done
        port_open "$RELANCE_KAFKA_PORT" || die "the broker did not open port $RELANCE_KAFKA_PORT; see $KAFKA_LOG"
    fi
    create_topics
}

create_topics() {
    # Names must match [kafka.topics] in config/default.toml. Memory storage forgets topics
    # when the broker stops, so they are (re)created on every start; existing ones are kept.
    local topic output
    for topic in billing.invoices billing.payments billing.customers \
        relance.reminders relance.tasks relance.events relance.dlq; do
        if output=$("$TANSU_BIN" topic create "$topic" --partitions "$RELANCE_TOPIC_PARTITIONS" \
            --broker "tcp://$RELANCE_KAFKA_BOOTSTRAP" 2>&1); then
            log "Created topic $topic ($RELANCE_TOPIC_PARTITIONS partitions)"
        elif grep -qi "already exists" <<<"$output"; then
            :
        else
            die "creating topic $topic failed: $output"
        fi
    done
}

start_postgres() {
    [ -x "$PG_BIN_DIR/pg_ctl" ] || die "PostgreSQL 15 server binaries not found in $PG_BIN_DIR (apt-get install postgresql-15)"
    local data_dir
    data_dir=$(pg_data_dir)
    if ! as_pg_user "$PG_BIN_DIR/pg_ctl" -D "$data_dir" status >/dev/null 2>&1 \
        && pg_isready -q -h 127.0.0.1 -p "$RELANCE_PG_PORT" -U postgres; then
        log "Port $RELANCE_PG_PORT is already served by a PostgreSQL this checkout did not start; using it"
        create_database
        return
    fi
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/postgresql postgres
    fi
    if [ ! -f "$data_dir/PG_VERSION" ]; then
        log "Creating a PostgreSQL cluster in $data_dir"
        mkdir -p "$data_dir"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$data_dir"
        chmod 700 "$data_dir"
        as_pg_user "$PG_BIN_DIR/initdb" -D "$data_dir" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >"$RELANCE_STATE_DIR/initdb.log" 2>&1 \
            || die "initdb failed; see $RELANCE_STATE_DIR/initdb.log"
    fi
    if as_pg_user "$PG_BIN_DIR/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; then
        log "PostgreSQL already running on 127.0.0.1:$RELANCE_PG_PORT ($data_dir)"
    else
        log "Starting PostgreSQL on 127.0.0.1:$RELANCE_PG_PORT"
        # Durability is traded for speed: this cluster is for development and tests only.
        as_pg_user "$PG_BIN_DIR/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -w -t 30 start \
            -o "-c listen_addresses=127.0.0.1 -p $RELANCE_PG_PORT -c unix_socket_directories=$data_dir \
                -c max_connections=500 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            >/dev/null || die "PostgreSQL did not start; see $data_dir/server.log"
    fi
    for _ in $(seq 1 50); do
        pg_isready -q -h 127.0.0.1 -p "$RELANCE_PG_PORT" -U postgres && break
        sleep 0.1
    done
    pg_isready -q -h 127.0.0.1 -p "$RELANCE_PG_PORT" -U postgres || die "PostgreSQL is not ready"
    create_database
}

create_database() {
    if [ "$(psql -h 127.0.0.1 -p "$RELANCE_PG_PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$RELANCE_PG_DB'")" != "1" ]; then
        psql -q -h 127.0.0.1 -p "$RELANCE_PG_PORT" -U postgres -d postgres \
            -c "CREATE DATABASE \"$RELANCE_PG_DB\"" >/dev/null
        log "Created database $RELANCE_PG_DB"
    fi
}

migrate_database() {
    log "Applying migrations to $RELANCE_PG_DB"
    (cd "$RELANCE_ROOT" && RELANCE_ENV=local cargo run --quiet --bin ingestor -- migrate)
}

mkdir -p "$RELANCE_STATE_DIR"
start_kafka
start_postgres
[ "$migrate" -eq 1 ] && migrate_database
log "Up: Kafka $RELANCE_KAFKA_BOOTSTRAP, PostgreSQL $DATABASE_URL"
