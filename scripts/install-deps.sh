#!/usr/bin/env bash
# Installs what relance's commands need on this machine, once; every later run checks and
# returns at once. Shared by `make run`, `make demo`, `make test`, `make chaos`, `make bench`
# and .ci/run, so a fresh machine behaves as CI does.
#   - Debian packages: PostgreSQL 15, a C toolchain, pkg-config and OpenSSL headers (librdkafka
#     and sqlx build), Python 3 with venv and pip, chromium and its driver (the tracker's
#     browser test);
#   - cargo-nextest and the clippy/rustfmt components;
#   - the pinned tansu broker (scripts/install-tansu.sh) and the Python tools
#     (scripts/install-python-tools.sh).
# Options: --system-only (Debian packages only), --no-browser (skip chromium, for run and demo).
set -euo pipefail
cd "$(dirname "$0")/.."

system_only=0
browser=1
for argument in "$@"; do
    case "$argument" in
        --system-only) system_only=1 ;;
        --no-browser) browser=0 ;;
        *) echo "install-deps: unknown option $argument" >&2; exit 2 ;;
    esac
done

missing=()
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || missing+=(postgresql-15 postgresql-client-15)
command -v psql >/dev/null || missing+=(postgresql-client-15)
command -v pkg-config >/dev/null || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(build-essential)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ "$browser" = 1 ]; then
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "$system_only" = 1 ] && exit 0

export RELANCE_CACHE_DIR=${RELANCE_CACHE_DIR:-$HOME/.cache/relance}
export PATH="$RELANCE_CACHE_DIR/tools/cargo/bin:$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo is missing: install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked --root "$RELANCE_CACHE_DIR/tools/cargo"
fi
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
fi
scripts/install-tansu.sh
scripts/install-python-tools.sh
scripts/fuzz-admin-api.sh --install-only
