#!/usr/bin/env bash
# Fuzzes the scheduler's admin API against its contract, docs/admin-api.yaml, with schemathesis
# (an OpenAPI-driven fuzzer): every answer's status code, content type, headers and body must be
# the ones the spec documents, invalid requests must be rejected and valid ones accepted.
#
#   scripts/fuzz-admin-api.sh [options] [-- extra schemathesis run options]
#
#   --bin-dir DIR        where the built scheduler is (default $CARGO_TARGET_DIR/debug)
#   --seed N             hypothesis seed (default 20261130): the same seed, the same requests
#   --max-examples N     test cases per operation and phase (default 25)
#   --keep               keep the database and the topics after the run, for inspection
#   --install-only       install the tools into the cache, fuzz nothing
#
# Needs the local PostgreSQL and broker (started here with scripts/up.sh --no-migrate when they
# are not up) and an already built scheduler: it runs no cargo. Each run gets its own database
# (relance_fuzz_<random>, migrated by the scheduler, seeded by scripts/fuzz_admin_api.py) and
# its own topics, and a copy of the binary (a build in progress may replace the original). It
# validates the spec as OpenAPI 3.1, starts the scheduler on a free port, sends fixed probes
# (the failures of issue 14 item 6: unknown fields, bad dates, limits, a body too large),
# runs schemathesis with every check and the dev token of config/dev-admin-tokens, and prints
# the failures grouped by cause and route. Reports: .local/fuzz-admin-api/ (summary.txt,
# summary.json, probes.json, the schemathesis output, NDJSON and JUnit reports, the
# scheduler's log).
# Exits non-zero on any failure. Tools are installed once into $RELANCE_CACHE_DIR/tools/fuzz.
set -euo pipefail
. "$(dirname "$0")/env.sh"

bin_dir="${CARGO_TARGET_DIR:-$RELANCE_CACHE_DIR/target}/debug"
seed=20261130
max_examples=25
keep=0
install_only=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir=${2:?--bin-dir needs a folder}; shift 2 ;;
        --bin-dir=*) bin_dir=${1#*=}; shift ;;
        --seed) seed=${2:?--seed needs a number}; shift 2 ;;
        --seed=*) seed=${1#*=}; shift ;;
        --max-examples) max_examples=${2:?--max-examples needs a number}; shift 2 ;;
        --max-examples=*) max_examples=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        --install-only) install_only=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

TOOLS="$RELANCE_CACHE_DIR/tools/fuzz"
VENV="$TOOLS/venv"
PYTHON="$VENV/bin/python"
REQUIREMENTS="$RELANCE_ROOT/scripts/fuzz-requirements.txt"
HELPER="$RELANCE_ROOT/scripts/fuzz_admin_api.py"
SPEC="$RELANCE_ROOT/docs/admin-api.yaml"
CONFIG="$RELANCE_ROOT/scripts/fuzz-admin-api.toml"
OUT="$RELANCE_STATE_DIR/fuzz-admin-api"

install_venv() {
    local stamp="$VENV/.requirements"
    if [ -x "$PYTHON" ] && cmp -s "$REQUIREMENTS" "$stamp"; then
        return
    fi
    log "Installing the fuzzer into $VENV"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "schemathesis $(grep -o '^schemathesis==.*' "$REQUIREMENTS") needs Python 3.11 or later; python3 is $(python3 -V 2>&1)"
    mkdir -p "$TOOLS"
    python3 -m venv --clear "$VENV" || die "python3 -m venv failed: install python3-venv"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$stamp"
}

install_venv
[ "$install_only" -eq 1 ] && exit 0

started=$(date +%s)
scheduler="$bin_dir/scheduler"
[ -x "$scheduler" ] || die "no scheduler binary at $scheduler: build it (cargo build --bin scheduler) or pass --bin-dir"
if ! port_open "$RELANCE_PG_PORT" || ! port_open "$RELANCE_KAFKA_PORT"; then
    "$RELANCE_ROOT/scripts/up.sh" --no-migrate
fi

rm -rf "$OUT"
mkdir -p "$OUT"
suffix=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
database="relance_fuzz_$suffix"
topic_prefix="relance-fuzz-$suffix"
topics=(relance.reminders relance.tasks relance.events relance.dlq billing.invoices)
scratch=$(mktemp -d)
scheduler_pid=""

psql_admin() {
    psql -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$RELANCE_PG_PORT" -U postgres "$@"
}

stop_scheduler() {
    [ -n "$scheduler_pid" ] || return 0
    if kill -0 "$scheduler_pid" 2>/dev/null; then
        kill -TERM "$scheduler_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$scheduler_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$scheduler_pid" 2>/dev/null; then
            log "The scheduler did not stop within 10 s of SIGTERM; killing it"
            kill -KILL "$scheduler_pid" 2>/dev/null || true
        fi
    fi
    wait "$scheduler_pid" 2>/dev/null || true
    scheduler_pid=""
}

cleanup() {
    stop_scheduler
    if [ "$keep" -eq 0 ]; then
        psql_admin -d postgres -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
        for topic in "${topics[@]}"; do
            "$TANSU_BIN" topic delete "$topic_prefix.$topic" --broker "tcp://$RELANCE_KAFKA_BOOTSTRAP" >/dev/null 2>&1 || true
        done
    else
        log "Kept database $database and topics $topic_prefix.*"
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The development operator's token, written in a comment of the development tokens file (the
# file itself holds digests only).
token=$(awk '/^#   dev-operator: / { print $3; exit }' "$RELANCE_ROOT/config/dev-admin-tokens")
[ -n "$token" ] || die "no token in config/dev-admin-tokens"
admin_port=$(free_port)
ops_port=$(free_port)
while [ "$ops_port" = "$admin_port" ]; do ops_port=$(free_port); done

log "Validating $SPEC as OpenAPI 3.1"
spec_ok=1
if ! "$VENV/bin/openapi-spec-validator" "$SPEC" >"$OUT/spec-validation.txt" 2>&1; then
    spec_ok=0
    log "docs/admin-api.yaml is not valid OpenAPI 3.1:"
    cat "$OUT/spec-validation.txt" >&2
fi

log "Database $database, topics $topic_prefix.*"
psql_admin -d postgres -c "CREATE DATABASE \"$database\"" >/dev/null
for topic in "${topics[@]}"; do
    "$TANSU_BIN" topic create "$topic_prefix.$topic" --partitions 1 \
        --broker "tcp://$RELANCE_KAFKA_BOOTSTRAP" >/dev/null 2>&1 \
        || die "creating topic $topic_prefix.$topic failed (is the broker up? scripts/up.sh --no-migrate)"
done

# A copy: another engineer's build may replace the binary while this one runs.
cp "$scheduler" "$scratch/scheduler"
export RELANCE_ENV=test
export RELANCE_CONFIG_DIR="$RELANCE_ROOT/config"
export RELANCE__DATABASE__PORT="$RELANCE_PG_PORT"
export RELANCE__DATABASE__DATABASE_NAME="$database"
export RELANCE__DATABASE__MIGRATE_ON_START=true
export RELANCE__KAFKA__BOOTSTRAP_SERVERS="$RELANCE_KAFKA_BOOTSTRAP"
export RELANCE__KAFKA__TOPICS__REMINDERS="$topic_prefix.relance.reminders"
export RELANCE__KAFKA__TOPICS__TASKS="$topic_prefix.relance.tasks"
export RELANCE__KAFKA__TOPICS__EVENTS="$topic_prefix.relance.events"
export RELANCE__KAFKA__TOPICS__DLQ="$topic_prefix.relance.dlq"
export RELANCE__SCHEDULER__ADMIN_LISTEN_ADDRESS="127.0.0.1:$admin_port"
export RELANCE__SCHEDULER__OPS_LISTEN_ADDRESS="127.0.0.1:$ops_port"
export RELANCE__TELEMETRY__LOG_LEVEL="info,sqlx=warn,librdkafka=warn"

log "Migrating and seeding $database"
"$scratch/scheduler" migrate >"$OUT/scheduler.log" 2>&1 || { cat "$OUT/scheduler.log" >&2; die "scheduler migrate failed"; }
"$PYTHON" "$HELPER" seed --topic-prefix "$topic_prefix" >"$OUT/seed.sql"
psql_admin -d "$database" -f "$OUT/seed.sql" >/dev/null

log "Starting the scheduler (admin API on 127.0.0.1:$admin_port)"
"$scratch/scheduler" serve >>"$OUT/scheduler.log" 2>&1 </dev/null &
scheduler_pid=$!
deadline=$((SECONDS + 60))
until port_open "$admin_port"; do
    kill -0 "$scheduler_pid" 2>/dev/null || { tail -n 30 "$OUT/scheduler.log" >&2; die "the scheduler exited; see $OUT/scheduler.log"; }
    [ "$SECONDS" -lt "$deadline" ] || die "the admin API did not open port $admin_port within 60 s; see $OUT/scheduler.log"
    sleep 0.1
done

base_url="http://127.0.0.1:$admin_port"
export RELANCE_FUZZ_ADMIN_TOKEN="$token"
# The probes first: they expect the seed as it was written.
log "Probing the cases of issue 14 item 6"
probe_status=0
(cd "$OUT" && "$PYTHON" "$HELPER" probe --spec "$SPEC" --base-url "$base_url" --token "$token" \
    --out "$OUT/probes.json") >"$OUT/probes.txt" 2>&1 || probe_status=$?

log "Fuzzing $base_url against docs/admin-api.yaml (seed $seed, $max_examples examples per operation)"
fuzz_status=0
(cd "$OUT" && "$VENV/bin/schemathesis" --config-file "$CONFIG" --no-color run "$SPEC" \
    --url "$base_url" \
    --checks all \
    --seed "$seed" \
    --max-examples "$max_examples" \
    --workers 1 \
    --continue-on-failure \
    --request-timeout 10 \
    --report ndjson,junit \
    --report-dir "$OUT" \
    --report-ndjson-path "$OUT/schemathesis.ndjson" \
    --report-junit-path "$OUT/schemathesis-junit.xml" \
    ${extra[@]+"${extra[@]}"}) >"$OUT/schemathesis.txt" 2>&1 || fuzz_status=$?

stop_scheduler

summary_status=0
"$PYTHON" "$HELPER" summary "$OUT/schemathesis.ndjson" --probes "$OUT/probes.json" \
    --schemathesis-output "$OUT/schemathesis.txt" --schemathesis-status "$fuzz_status" \
    --spec-valid "$spec_ok" --json "$OUT/summary.json" --scheduler-log "$OUT/scheduler.log" \
    --elapsed "$(($(date +%s) - started))" | tee "$OUT/summary.txt" || summary_status=$?
[ "$probe_status" -le 1 ] || { cat "$OUT/probes.txt" >&2; die "the probes could not run"; }
exit "$summary_status"
