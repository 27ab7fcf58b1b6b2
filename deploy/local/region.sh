#!/usr/bin/env bash
# Acts on one region of a deployment made by up.sh (the drill's start/partition/heal commands).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/all.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"

print_usage() {
    cat <<EOF
usage: $SCRIPT_NAME start|stop|kill|partition|heal|status REGION [--run-dir DIR]

  start      start every process of the region that does not run, with the same ports and
             data as before (a killed region comes back with its data); waits for a leader
  stop       SIGTERM every process (PostgreSQL: SIGINT, fast shutdown) and wait; SIGKILL after
             ${STOP_GRACE} s (STOP_GRACE)
  kill       SIGKILL every process of the region and its children at once (region loss)
  partition  stop the region's forwarders: nothing reaches its replicas (clients, the other
             regions' replicators and peer checks) and its own replicas reach no other region;
             its processes keep running. Stays partitioned across start until heal
  heal       start the region's forwarders again
  status     one line per process: name, pid or "-", running or stopped
  --run-dir DIR  the deployment's run dir [default: deploy/local/run]
EOF
}

RUN_DIR="$DEFAULT_RUN_DIR"
positional=()
while (($# > 0)); do
    case "$1" in
    -h | --help)
        print_usage
        exit 0
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
    -*) usage_error "unknown option \`$1\`" ;;
    *)
        positional+=("$1")
        shift
        ;;
    esac
done
((${#positional[@]} == 2)) || usage_error "expected a command and a region, found ${#positional[@]} argument(s): ${positional[*]:-none}"
action="${positional[0]}"
region="${positional[1]}"
case "$action" in
start | stop | kill | partition | heal | status) ;;
*) usage_error "unknown command \`$action\`: expected start, stop, kill, partition, heal or status" ;;
esac

RUN_DIR="$(absolute_path "$RUN_DIR")"
load_deployment
r="$(region_index "$region")"
[[ "$action" == status ]] || lock_region "$region"

case "$action" in
start)
    require_tools
    start_region "$r"
    ;;
stop)
    stop_region "$r"
    say "$region: stopped"
    ;;
kill)
    kill_region "$r"
    say "$region: killed"
    ;;
partition)
    touch "$(region_dir "$region")/partitioned"
    mapfile -t forwarders < <(forwarder_names "$r")
    stop_processes "$r" "${forwarders[@]}"
    say "$region: partitioned (its forwarders are stopped)"
    ;;
heal)
    rm -f "$(region_dir "$region")/partitioned"
    while IFS= read -r process; do
        start_process "$r" "$process"
    done < <(forwarder_names "$r")
    while IFS= read -r process; do
        wait_process_ready "$r" "$process"
    done < <(forwarder_names "$r")
    say "$region: healed (its forwarders run)"
    ;;
status)
    while IFS= read -r process; do
        if process_alive "$r" "$process"; then
            printf '%-28s %-8s running\n' "$process" "$(recorded_pid "$region" "$process")"
        else
            printf '%-28s %-8s stopped\n' "$process" -
        fi
    done < <(process_names "$r")
    if [[ -e "$(region_dir "$region")/partitioned" ]]; then
        echo "partitioned"
    fi
    ;;
esac
