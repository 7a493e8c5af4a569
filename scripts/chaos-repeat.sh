#!/usr/bin/env bash
# The short chaos run N times in a row with seeds 1..N (default 20), as issue 13 asks before
# calling it stable; one line per run in .local/chaos-repeat.log, each run's output in
# .local/chaos-repeat-<seed>.log. Needs built debug binaries (make build). Stops at nothing:
# read the log at the end. Exit status: the number of failed runs (0: all passed).
set -uo pipefail
. "$(dirname "$0")/env.sh"
cd "$RELANCE_ROOT"
runs=${1:-20}
mkdir -p .local
log=.local/chaos-repeat.log
: >"$log"
failed=0
for seed in $(seq 1 "$runs"); do
    start=$(date +%s)
    "$RELANCE_PYTHON" scripts/chaos.py --short --build debug --seed "$seed" >".local/chaos-repeat-$seed.log" 2>&1
    status=$?
    [ "$status" -eq 0 ] || failed=$((failed + 1))
    echo "seed $seed: exit $status in $(( $(date +%s) - start )) s" | tee -a "$log"
done
echo "$failed of $runs runs failed" | tee -a "$log"
exit "$failed"
