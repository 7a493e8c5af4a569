#!/usr/bin/env bash
# Creates (once) a Python virtual environment in the cache with scripts/python-requirements.txt,
# for tests and demos that publish events from another language than Rust.
set -euo pipefail
. "$(dirname "$0")/env.sh"

requirements="$RELANCE_ROOT/scripts/python-requirements.txt"
stamp="$RELANCE_VENV/.requirements"
if [ -x "$RELANCE_PYTHON" ] && cmp -s "$requirements" "$stamp"; then
    exit 0
fi
log "Creating the Python tools environment in $RELANCE_VENV"
python3 -m venv "$RELANCE_VENV"
"$RELANCE_PYTHON" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
