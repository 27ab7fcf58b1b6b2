# shellcheck shell=bash
# deploy/local: readiness checks, and starting, stopping and killing a whole region.

# Prints the last lines of process $2's log of region $1, indented.
log_tail() {
    local file
    file="$(region_dir "$1")/logs/$2.log"
    echo "  last lines of $file:"
    tail -n 15 "$file" 2>/dev/null | sed 's/^/    /' || true
}

# Waits up to $3 seconds until command "${@:4}" succeeds, for process $2 of region index $1;
# fails with the process's log when it exits or the time is up.
wait_ready() {
    local r="$1" process="$2" timeout="$3" name="${REGIONS[$1]}" deadline
    shift 3
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ! process_alive "$r" "$process"; then
            log_tail "$name" "$process" >&2
            die "$name: $process exited while starting"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$name" "$process" >&2
            die "$name: $process not ready after ${timeout}s ($*)"
        fi
        sleep 0.2
    done
    if ! process_alive "$r" "$process"; then
        log_tail "$name" "$process" >&2
        die "$name: $process exited while starting"
    fi
}

# Succeeds when `tandem cluster status` at $1 names a leader.
has_leader() {
    local json
    json="$("$TANDEM" cluster status --output json --server "$1" 2>/dev/null)" || return 1
    [[ "$json" == *'"leader": {'* ]]
}

# Waits until process $2 of region index $1 is ready for what comes after it.
wait_process_ready() {
    local r="$1" process="$2"
    case "$process" in
    etcd)
        wait_ready "$r" "$process" 30 etcdctl --dial-timeout=1s --command-timeout=2s \
            --endpoints "http://127.0.0.1:$(port_etcd_client "$r")" endpoint health
        ;;
    postgres)
        wait_ready "$r" "$process" 60 "$PG_BIN/pg_isready" -q -h 127.0.0.1 \
            -p "$(port_postgres "$r")" -U postgres -d postgres -t 2
        ;;
    serve-*)
        wait_ready "$r" "$process" 60 "$TANDEM" cluster status --output json \
            --server "http://127.0.0.1:$(port_listen "$r" "${process#serve-}")"
        ;;
    replicate)
        # No port of its own: alive half a second after its start is all that can be seen.
        sleep 0.5
        wait_ready "$r" "$process" 1 true
        ;;
    forward-*)
        process_command "$r" "$process"
        wait_ready "$r" "$process" 10 port_in_use "${PORTS[0]}"
        ;;
    esac
}

# Waits up to 60 s until region index $1 has a leader.
wait_leader() {
    local r="$1" i deadline=$((SECONDS + 60))
    until has_leader "$(listen_urls "$r")"; do
        for ((i = 1; i <= REPLICAS; i++)); do
            if ! process_alive "$r" "serve-$i"; then
                log_tail "${REGIONS[$r]}" "serve-$i" >&2
                die "${REGIONS[$r]}: serve-$i exited before the region elected a leader"
            fi
        done
        ((SECONDS < deadline)) || die "${REGIONS[$r]}: no leader elected 60 s after every replica answered (see $(region_dir "${REGIONS[$r]}")/logs)"
        sleep 0.2
    done
}

# Creates the database `tandem` on region index $1's PostgreSQL unless it exists.
ensure_database() {
    local r="$1" port exists
    port="$(port_postgres "$r")"
    exists="$("$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAq \
        -c "SELECT 1 FROM pg_database WHERE datname = 'tandem'")" ||
        die "${REGIONS[$r]}: cannot ask PostgreSQL on port $port for its databases"
    if [[ "$exists" != 1 ]]; then
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres tandem ||
            die "${REGIONS[$r]}: cannot create the database tandem on PostgreSQL port $port"
    fi
}

# Takes the lock of region $1 (fd 9) so two scripts never act on one region at once.
lock_region() {
    local file
    file="$(region_dir "$1")/.lock"
    exec 9>"$file"
    flock -w 120 9 || die "$1: another deploy/local script holds $file for more than 120 s"
}

# Starts every process of region index $1 that does not run (forwarders only when the region
# is not partitioned), each after the one before is ready, then waits for a leader.
start_region() {
    local r="$1" name="${REGIONS[$1]}" process partitioned=false alive=false
    [[ -e "$(region_dir "$name")/partitioned" ]] && partitioned=true
    while IFS= read -r process; do
        process_alive "$r" "$process" && alive=true
    done < <(process_names "$r")
    if ! $alive; then
        # Killed from outside by pid (e.g. the drill): what the killed processes left
        # (PostgreSQL backends, shell attempts) goes before anything starts again.
        sweep "$name" "$(region_dir "$name")/"
    fi
    while IFS= read -r process; do
        if [[ "$process" == forward-* ]] && $partitioned; then
            continue
        fi
        start_process "$r" "$process"
        wait_process_ready "$r" "$process"
        if [[ "$process" == postgres ]]; then
            ensure_database "$r"
        elif [[ "$process" == "serve-$REPLICAS" ]]; then
            # Every serve answers: wait for the region's election.
            wait_leader "$r"
        fi
    done < <(process_names "$r")
    if $partitioned; then
        say "$name: started (partitioned: its forwarders stay down until \`region.sh heal $name\`)"
    else
        say "$name: started, leader elected, public addresses $(public_urls "$r")"
    fi
}

# Stops every process of region index $1, the reverse of the start order: the replicator and
# the serves with SIGTERM (the serves at once, so leadership is not handed from one to the
# next), the forwarders, PostgreSQL with SIGINT (fast shutdown), etcd; SIGKILL for any left
# after STOP_GRACE.
stop_region() {
    local r="$1" processes=()
    mapfile -t processes < <(process_names "$r" | grep -e '^serve-' -e '^replicate$')
    stop_processes "$r" "${processes[@]}"
    mapfile -t processes < <(forwarder_names "$r")
    stop_processes "$r" "${processes[@]}"
    SIGNAL=INT stop_processes "$r" postgres
    stop_processes "$r" etcd
    # Anything left that writes into the region's dir (none, normally).
    sweep "${REGIONS[$r]}" "$(region_dir "${REGIONS[$r]}")/"
}

# SIGKILLs every process (and process group) of region index $1 at once and waits until they
# are gone.
kill_region() {
    local r="$1" processes=() process
    mapfile -t processes < <(process_names "$r")
    for process in "${processes[@]}"; do
        signal_process "$r" "$process" KILL
    done
    sweep "${REGIONS[$r]}" "$(region_dir "${REGIONS[$r]}")/"
    STOP_GRACE=10 wait_stopped "$r" "${processes[@]}"
}
