# shellcheck shell=bash
# deploy/local: the processes of a region: their command lines, pid files, starting them
# detached, telling whether they run, stopping them, and sweeping what they leave.
#
# Processes of a region, in start order: etcd, postgres, forward-in-<i>,
# forward-out-<region>-<i>, serve-<i>, replicate. The network comes before the servers, as in
# a real region: a region that comes back reaches its peers from its first moment, so its
# leader learns of a promotion elsewhere before it takes over (the check before takeover).

# Prints region index $1's process names, one a line, in start order.
process_names() {
    local r="$1" s i
    echo etcd
    echo postgres
    for ((i = 1; i <= REPLICAS; i++)); do echo "forward-in-$i"; done
    for s in "${!REGIONS[@]}"; do
        ((s == r)) && continue
        for ((i = 1; i <= REPLICAS; i++)); do echo "forward-out-${REGIONS[$s]}-$i"; done
    done
    for ((i = 1; i <= REPLICAS; i++)); do echo "serve-$i"; done
    echo replicate
}

# Prints region index $1's forwarder names (the processes partition stops).
forwarder_names() {
    process_names "$1" | grep '^forward-'
}

# Sets ARGV to the command line of process $2 of region index $1 (exactly what
# /proc/PID/cmdline shows once it runs) and PORTS to the ports it listens on.
process_command() {
    local r="$1" process="$2" name="${REGIONS[$1]}" dir
    dir="$(region_dir "${REGIONS[$1]}")"
    PORTS=()
    case "$process" in
    etcd)
        local client peer
        client="http://127.0.0.1:$(port_etcd_client "$r")"
        peer="http://127.0.0.1:$(port_etcd_peer "$r")"
        ARGV=(etcd --name "$name" --data-dir "$dir/etcd" --logger=zap --log-outputs=stderr
            --listen-client-urls "$client" --advertise-client-urls "$client"
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
            --initial-cluster "$name=$peer" --initial-cluster-state new)
        ARGV[0]="$(command -v etcd)"
        PORTS=("$(port_etcd_client "$r")" "$(port_etcd_peer "$r")")
        ;;
    postgres)
        # No Unix socket: its path would be too long under a deep run dir; TCP only.
        ARGV=("$PG_BIN/postgres" -D "$dir/postgres/data" -p "$(port_postgres "$r")"
            -c listen_addresses=127.0.0.1 -c unix_socket_directories=
            -c max_connections=200 -c fsync=on -c synchronous_commit=on)
        PORTS=("$(port_postgres "$r")")
        ;;
    serve-*)
        local i="${process#serve-}"
        ARGV=("$TANDEM" --state-dir "$dir/state/replica-$i" serve --config "$(config_file "$name" "$i")")
        PORTS=("$(port_listen "$r" "$i")")
        ;;
    replicate)
        ARGV=("$TANDEM" --state-dir "$dir/state/replicate" replicate --config "$(config_file "$name" 1)")
        ;;
    forward-in-*)
        local i="${process#forward-in-}"
        forwarder "$(port_public "$r" "$i")" "$(port_listen "$r" "$i")"
        ;;
    forward-out-*)
        local rest="${process#forward-out-}" target
        target="$(region_index "${rest%-*}")"
        forwarder "$(port_out "$r" "$target" "${rest##*-}")" "$(port_public "$target" "${rest##*-}")"
        ;;
    *) die "internal: unknown process \`$process\`" ;;
    esac
}

# Sets ARGV and PORTS to a TCP forwarder from 127.0.0.1:$1 to 127.0.0.1:$2 (one child process
# per connection, all in the forwarder's process group).
forwarder() {
    ARGV=("$(command -v socat)" "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork,nodelay,backlog=512"
        "TCP:127.0.0.1:$2,nodelay")
    PORTS=("$1")
}

# The pid recorded for process $2 of region $1 (printed; empty when none).
recorded_pid() {
    local file
    file="$(pid_dir "$1")/$2.pid"
    [[ -f "$file" ]] || return 0
    local pid
    pid="$(head -n 1 "$file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && echo "$pid"
    return 0
}

# Succeeds when process $2 of region index $1 runs as recorded: its pid file names a live
# process whose command line is the expected one (so a reused pid is not mistaken for it).
# The program may have been started through an interpreter: the argument before the expected
# arguments must end with the program's name.
process_alive() {
    local r="$1" process="$2" pid actual=() expected_args
    pid="$(recorded_pid "${REGIONS[$r]}" "$process")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    process_command "$r" "$process"
    mapfile -d '' -t actual 2>/dev/null <"/proc/$pid/cmdline" || return 1
    local count=$((${#ARGV[@]} - 1)) start
    start=$((${#actual[@]} - count))
    ((start >= 1)) || return 1
    expected_args="$(printf '%s\n' "${ARGV[@]:1}")"
    [[ "$(printf '%s\n' "${actual[@]:start}")" == "$expected_args" ]] || return 1
    [[ "${actual[start - 1]}" == *"$(basename "${ARGV[0]}")" ]]
}

# Starts process $2 of region index $1 detached (own session, stdin from /dev/null, output
# appended to its log) unless it runs already, and records its pid. Fails naming the port when
# one of its ports is taken by another program.
start_process() {
    local r="$1" process="$2" name="${REGIONS[$1]}" port pids logs
    if process_alive "$r" "$process"; then
        say "$name: $process runs already (pid $(recorded_pid "$name" "$process"))"
        return 0
    fi
    process_command "$r" "$process"
    for port in "${PORTS[@]}"; do
        if port_in_use "$port"; then
            die "$name: cannot start $process: port $port is in use by another program"
        fi
    done
    pids="$(pid_dir "$name")"
    logs="$(region_dir "$name")/logs"
    local runas=()
    if [[ "$process" == postgres ]]; then
        # Backends of a killed postmaster hold its shared memory until they notice.
        sweep "$name" "$logs/postgres.log"
        clear_stale_postmaster_pid "$(region_dir "$name")/postgres/data"
        if ((EUID == 0)); then
            runas=(setpriv "--reuid=$PG_USER" "--regid=$PG_USER" --init-groups)
        fi
    fi
    # setsid runs in the background child itself (it is no group leader), so $! is the
    # program's pid once the execs are done. Fd 9 (the region lock) is not passed on.
    setsid "${runas[@]}" "${ARGV[@]}" </dev/null >>"$logs/$process.log" 2>&1 9>&- &
    echo "$!" >"$pids/$process.pid.tmp"
    mv -f "$pids/$process.pid.tmp" "$pids/$process.pid"
}

# Removes data dir $1's postmaster.pid when the pid it names now belongs to another program
# (reused after a SIGKILL): PostgreSQL would refuse to start while that pid lives.
clear_stale_postmaster_pid() {
    local data="$1" pid
    [[ -f "$data/postmaster.pid" ]] || return 0
    pid="$(head -n 1 "$data/postmaster.pid")"
    [[ "$pid" =~ ^[0-9]+$ && -e "/proc/$pid" ]] || return 0
    if [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" != "$data" ]]; then
        rm -f "$data/postmaster.pid"
    fi
}

# Sends signal $3 to the process group of process $2 of region index $1, if it runs.
signal_process() {
    local r="$1" process="$2" signal="$3" pid
    process_alive "$r" "$process" || return 0
    pid="$(recorded_pid "${REGIONS[$r]}" "$process")"
    kill "-$signal" -- "-$pid" 2>/dev/null || kill "-$signal" "$pid" 2>/dev/null || true
}

# Waits until none of the processes "${@:2}" of region index $1 runs, up to $STOP_GRACE
# seconds, then SIGKILLs (with a warning) the ones left. Removes their pid files.
wait_stopped() {
    local r="$1" name="${REGIONS[$1]}" process pid deadline left killed=false
    shift
    deadline=$((SECONDS + STOP_GRACE))
    while :; do
        left=()
        for process in "$@"; do
            process_alive "$r" "$process" && left+=("$process")
        done
        ((${#left[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            $killed && die "$name: ${left[*]} still running 5 s after SIGKILL"
            say "$name: ${left[*]} still running ${STOP_GRACE} s after the signal: SIGKILL"
            for process in "${left[@]}"; do
                signal_process "$r" "$process" KILL
            done
            killed=true
            deadline=$((SECONDS + 5))
        fi
        sleep 0.1
    done
    for process in "$@"; do
        pid="$(recorded_pid "$name" "$process")"
        # Leftover children of a stopped group leader (connections of a forwarder, shell
        # attempts of a serve) keep its process group alive: kill them too.
        if [[ -n "$pid" ]]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        rm -f "$(pid_dir "$name")/$process.pid"
    done
}

# Stops processes "${@:2}" of region index $1 with $SIGNAL (default TERM) and waits.
stop_processes() {
    local r="$1" process
    shift
    for process in "$@"; do
        signal_process "$r" "$process" "${SIGNAL:-TERM}"
    done
    wait_stopped "$r" "$@"
}

# Prints the state letter of process $1 (R, S, D, Z, ...; nothing when it is gone).
process_state() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"
    echo "${stat%% *}"
}

# Prints this script's pid and its ancestors' pids, one a line.
own_lineage() {
    local pid="$BASHPID" stat
    while ((pid > 1)); do
        echo "$pid"
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || break
        stat="${stat##*) }"
        read -r _ pid _ <<<"$stat"
    done
}

# SIGKILLs every process whose standard output is a file under path $2 (a directory with a
# trailing /, or a file), except this script and its ancestors, and waits up to 5 s until
# they are gone. Every process started here writes into its region's dir, and so do its
# children unless they redirect: PostgreSQL's backends (they leave the postmaster's process
# group) and shell attempts (their output goes to the replica's state dir; they run in their
# own process group). $1 names the region for messages.
sweep() {
    local name="$1" prefix="$2" pattern pids=() own path pid deadline
    pattern="$(printf '%s' "$prefix" | sed 's/[][*?\\]/\\&/g')"
    [[ "$prefix" == */ ]] && pattern+="*"
    own=" $(own_lineage | tr '\n' ' ')"
    while IFS= read -r path; do
        pid="${path#/proc/}"
        pid="${pid%%/*}"
        [[ "$own" == *" $pid "* ]] || pids+=("$pid")
    done < <(find /proc/[0-9]*/fd/1 -maxdepth 0 -lname "$pattern" 2>/dev/null)
    ((${#pids[@]} > 0)) || return 0
    kill -KILL "${pids[@]}" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    for pid in "${pids[@]}"; do
        while [[ "$(process_state "$pid")" == [^Z]* ]]; do
            ((SECONDS < deadline)) || die "$name: process $pid still there 5 s after SIGKILL"
            sleep 0.05
        done
    done
}
