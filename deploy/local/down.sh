#!/usr/bin/env bash
# Stops every process of a deployment made by up.sh (SIGTERM, SIGKILL after a grace) and
# removes its run dir unless --keep. Running it again, or on a run dir that is gone, is fine.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/all.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"

print_usage() {
    cat <<EOF
usage: $SCRIPT_NAME [--run-dir DIR] [--keep]

  --run-dir DIR  the deployment's run dir [default: deploy/local/run]
  --keep         keep the run dir (data and logs): region.sh start REGION brings it back
EOF
}

RUN_DIR="$DEFAULT_RUN_DIR"
keep=false
while (($# > 0)); do
    case "$1" in
    -h | --help)
        print_usage
        exit 0
        ;;
    --keep)
        keep=true
        shift
        ;;
    --run-dir)
        (($# >= 2)) || usage_error "--run-dir: expected a value"
        RUN_DIR="$2"
        shift 2
        ;;
    --run-dir=*)
        RUN_DIR="${1#*=}"
        shift
        ;;
    *) usage_error "unknown argument \`$1\`" ;;
    esac
done
RUN_DIR="$(absolute_path "$RUN_DIR")"

if [[ ! -e "$RUN_DIR" ]]; then
    say "$RUN_DIR does not exist: nothing to stop"
    exit 0
fi
# Only a directory up.sh made is ever removed.
if [[ ! -f "$RUN_DIR/deployment.conf" ]]; then
    if [[ -d "$RUN_DIR" && -z "$(ls -A "$RUN_DIR")" ]]; then
        $keep || rmdir "$RUN_DIR"
        exit 0
    fi
    die "$RUN_DIR is not a deployment made by up.sh (no deployment.conf there): not touching it"
fi

load_deployment
# Every region's processes get their signal before any is waited for.
for r in "${!REGIONS[@]}"; do
    [[ -d "$(region_dir "${REGIONS[$r]}")" ]] || continue
    (
        lock_region "${REGIONS[$r]}"
        stop_region "$r"
    ) &
done
failed=0
for job in $(jobs -p); do
    wait "$job" || failed=1
done
((failed == 0)) || die "a region did not stop (see above); $RUN_DIR is kept"

if $keep; then
    say "stopped; $RUN_DIR kept"
else
    rm -rf -- "$RUN_DIR"
    say "stopped; $RUN_DIR removed"
fi
