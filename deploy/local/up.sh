#!/usr/bin/env bash
# Starts a complete multi-region Tandem deployment on this machine: per region an etcd, a
# PostgreSQL cluster, N `tandem serve` replicas, a `tandem replicate` and TCP forwarders for
# every address other regions and clients use (so a region can be partitioned), then writes
# RUN_DIR/topology.toml for `tandem dr ...`. Port layout and run dir files: see lib/layout.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/all.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/all.sh"

print_usage() {
    cat <<EOF
usage: $SCRIPT_NAME [--run-dir DIR] [--base-port N] [--replicas N] [--mode async|sync]
             [--regions ACTIVE,STANDBY[,...]] [--tandem PATH]

  --run-dir DIR     where data, logs, pid files and topology.toml go; must not exist or be
                    empty [default: deploy/local/run]
  --base-port N     first port of the layout; region k (from 0) uses N+100k .. N+100k+99
                    [default: 7100]
  --replicas N      tandem serve replicas per region, 1 to $MAX_REPLICAS [default: 2]
  --mode MODE       replication mode of every region: async or sync [default: async]
  --regions LIST    region names, the first active, the others standby [default: eu-west,us-east]
  --tandem PATH     the tandem binary [default: \$TANDEM_BIN, else the newer of
                    target/release/tandem and target/debug/tandem, else tandem on PATH]

Stop it with down.sh; act on one region with region.sh.
EOF
}

# The tandem binary when --tandem is not given (printed).
default_tandem() {
    local repo candidate newest=""
    if [[ -n "$ENV_TANDEM_BIN" ]]; then
        echo "$ENV_TANDEM_BIN"
        return
    fi
    repo="$(cd "$LOCAL_DIR/../.." && pwd -P)"
    for candidate in "$repo/target/release/tandem" "$repo/target/debug/tandem"; do
        if [[ -x "$candidate" && (-z "$newest" || "$candidate" -nt "$newest") ]]; then
            newest="$candidate"
        fi
    done
    if [[ -n "$newest" ]]; then
        echo "$newest"
    else
        command -v tandem || echo tandem
    fi
}

RUN_DIR="$DEFAULT_RUN_DIR"
BASE_PORT=7100
REPLICAS=2
MODE=async
REGIONS_TEXT=eu-west,us-east
TANDEM=""
while (($# > 0)); do
    case "$1" in
    -h | --help)
        print_usage
        exit 0
        ;;
    --run-dir | --base-port | --replicas | --mode | --regions | --tandem)
        (($# >= 2)) || usage_error "$1: expected a value"
        case "$1" in
        --run-dir) RUN_DIR="$2" ;;
        --base-port) BASE_PORT="$2" ;;
        --replicas) REPLICAS="$2" ;;
        --mode) MODE="$2" ;;
        --regions) REGIONS_TEXT="$2" ;;
        --tandem) TANDEM="$2" ;;
        esac
        shift 2
        ;;
    --*=*)
        set -- "${1%%=*}" "${1#*=}" "${@:2}"
        ;;
    *) usage_error "unknown argument \`$1\`" ;;
    esac
done

IFS=, read -r -a REGIONS <<<"$REGIONS_TEXT"
check_regions "${REGIONS[@]}"
check_int "$BASE_PORT" 1024 $((65535 - 100 * ${#REGIONS[@]} + 1)) "--base-port"
BASE_PORT=$((10#$BASE_PORT))
check_int "$REPLICAS" 1 "$MAX_REPLICAS" "--replicas"
REPLICAS=$((10#$REPLICAS))
[[ "$MODE" == async || "$MODE" == sync ]] || usage_error "--mode: expected async or sync, found \`$MODE\`"
[[ -n "$TANDEM" ]] || TANDEM="$(default_tandem)"
if [[ "$TANDEM" != */* ]]; then
    TANDEM="$(command -v "$TANDEM")" || die "--tandem: \`$TANDEM\` is not on PATH: build it (cargo build) or give its path"
fi
[[ -x "$TANDEM" && -f "$TANDEM" ]] || die "--tandem: \`$TANDEM\` is not an executable file: build it (cargo build) or give its path"
TANDEM="$(absolute_path "$TANDEM")"
for command in serve replicate "cluster status"; do
    # shellcheck disable=SC2086 # "cluster status" is two words on purpose
    "$TANDEM" $command --help >/dev/null 2>&1 ||
        die "$TANDEM has no \`$command\` command: build the current workspace (cargo build) or pass --tandem"
done
RUN_DIR="$(absolute_path "$RUN_DIR")"
[[ "$RUN_DIR" != *[[:cntrl:]]* ]] || usage_error "--run-dir: the path holds a control character"
require_tools

if [[ -e "$RUN_DIR" ]]; then
    [[ -d "$RUN_DIR" ]] || die "$RUN_DIR exists and is not a directory"
    if [[ -n "$(ls -A "$RUN_DIR")" ]]; then
        if [[ -f "$RUN_DIR/deployment.conf" ]]; then
            die "$RUN_DIR holds a deployment already: stop and remove it with \`down.sh --run-dir $RUN_DIR\`, or restart a kept one with \`region.sh start REGION --run-dir $RUN_DIR\`"
        fi
        die "$RUN_DIR is not empty: choose another --run-dir or empty it"
    fi
fi
while IFS=$'\t' read -r port what; do
    if port_in_use "$port"; then
        die "port $port ($what) is in use: stop what uses it or choose another --base-port"
    fi
done < <(all_ports)

mkdir -p "$RUN_DIR"
write_deployment
# From here on a failure stops what was started; the run dir stays for its logs.
started=false
on_exit() {
    local status=$?
    if ((status != 0)) && $started; then
        echo "$SCRIPT_NAME: failed; stopping what was started (the logs stay in $RUN_DIR; remove it with down.sh --run-dir $RUN_DIR)" >&2
        for r in "${!REGIONS[@]}"; do
            stop_region "$r" >&2 || true
        done
    fi
}
trap on_exit EXIT

# Creates region index $1's directories, configs, etcd data dir and PostgreSQL cluster with
# its database `tandem`.
create_region() {
    local r="$1" name="${REGIONS[$1]}" dir i
    dir="$(region_dir "$name")"
    mkdir -p "$dir/pids" "$dir/logs" "$dir/config" "$dir/state" "$dir/postgres"
    mkdir -m 700 "$dir/etcd"
    for ((i = 1; i <= REPLICAS; i++)); do
        write_replica_config "$r" "$i"
    done
    local initdb=("$PG_BIN/initdb" -D "$dir/postgres/data" -U postgres --auth=trust -E UTF8
        --locale=C.UTF-8 --no-sync --no-instructions)
    if ((EUID == 0)); then
        chown "$PG_USER:" "$dir/postgres"
        runuser -u "$PG_USER" -- test -w "$dir/postgres" ||
            die "the user $PG_USER cannot write $dir/postgres (a parent directory is closed to it): choose a --run-dir it can reach"
        initdb=(runuser -u "$PG_USER" -- "${initdb[@]}")
    fi
    "${initdb[@]}" >"$dir/logs/initdb.log" 2>&1 || {
        tail -n 20 "$dir/logs/initdb.log" >&2
        die "$name: initdb failed (log: $dir/logs/initdb.log)"
    }
}

# Writes RUN_DIR/topology.toml (format: the DR design, issue 5).
write_topology() {
    local file="$RUN_DIR/topology.toml" r name region_sh command urls
    region_sh="$(toml_string "$LOCAL_DIR/region.sh")"
    {
        echo "# Two-region deployment on this machine, written by deploy/local/up.sh."
        echo "# export TANDEM_DR_TOPOLOGY=$file"
        for r in "${!REGIONS[@]}"; do
            name="${REGIONS[$r]}"
            urls="$(public_urls "$r")"
            echo
            echo "[regions.$name]"
            echo "endpoints = [\"${urls//,/\", \"}\"]"
            echo "[regions.$name.local]"
            echo "pid_dir = $(toml_string "$(pid_dir "$name")")"
            for command in start partition heal; do
                echo "$command = [$region_sh, \"$command\", \"$name\", \"--run-dir\", $(toml_string "$RUN_DIR")]"
            done
            echo "postgres_url = $(toml_string "postgres://postgres@127.0.0.1:$(port_postgres "$r")/tandem")"
        done
    } >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

say "tandem: $TANDEM"
for r in "${!REGIONS[@]}"; do
    create_region "$r"
done
started=true
for r in "${!REGIONS[@]}"; do
    name="${REGIONS[$r]}"
    lock_region "$name"
    start_region "$r"
done
write_topology
# Up: whatever happens from here on (a closed stdout) leaves the deployment running.
started=false

active="${REGIONS[0]}"
cat <<EOF

Tandem is running: $active active, $(
    IFS=,
    echo "${REGIONS[*]:1}"
) standby, $REPLICAS replicas per region, $MODE replication.
  regions:   $(for r in "${!REGIONS[@]}"; do printf '%s %s  ' "${REGIONS[$r]}" "$(public_urls "$r")"; done)
  topology:  $RUN_DIR/topology.toml
  logs:      $RUN_DIR/<region>/logs/

  export TANDEM_DR_TOPOLOGY=$RUN_DIR/topology.toml
  $TANDEM dr status
  $TANDEM submit --server $(public_urls 0) examples/hello.yaml
  $TANDEM cluster status --server $(public_urls 0)

  $LOCAL_DIR/region.sh kill|start|stop|partition|heal|status REGION --run-dir $RUN_DIR
  $LOCAL_DIR/down.sh --run-dir $RUN_DIR
EOF
