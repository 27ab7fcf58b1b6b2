# shellcheck shell=bash
# deploy/local: the port layout, the run dir's files and each replica's region.toml.
#
# Port layout (B = --base-port, default 7100; region r = 0 for the first (active) region,
# 1 for the second, ...; replica i = 1..9; R = B + 100*r):
#   R+i         replica i's public address: a forwarder to R+10+i. Clients, the topology file
#               and the other regions use it; it is the replica's advertised address.
#   R+10+i      replica i's own gRPC listen address (used only by the scripts' health checks)
#   R+20, R+21  etcd client, etcd peer
#   R+30        PostgreSQL
#   R+40+10*s+i region r's way out to region s's replica i: a forwarder to that replica's
#               public address (the `[dr] peers` entries of region r point here)
# So, by default, eu-west: 7101-7102 public, 7111-7112 listen, 7120/7121 etcd, 7130 postgres,
# 7151-7152 out to us-east; us-east: 7201-7202, 7211-7212, 7220/7221, 7230, 7241-7242 to eu-west.
#
# Run dir (default deploy/local/run):
#   deployment.conf                 the settings up.sh was given (key=value), read by the others
#   topology.toml                   for `tandem dr ...` (TANDEM_DR_TOPOLOGY)
#   <region>/config/replica-<i>.toml  region.toml of each `tandem serve` (and of `tandem replicate`:
#                                   replica 1's)
#   <region>/pids/<name>.pid        one per running process: etcd, postgres, serve-<i>, replicate,
#                                   forward-in-<i>, forward-out-<region>-<i>. Each is the leader of
#                                   its own session and process group (signal -PID for its children)
#   <region>/logs/<name>.log        its stdout and stderr
#   <region>/etcd, <region>/postgres/data, <region>/state/replica-<i>   data
#   <region>/partitioned            present while the region is partitioned

# Arguments of the port functions: region index, then replica or target region index.

region_base() { echo $((BASE_PORT + 100 * $1)); }
port_public() { echo $(($(region_base "$1") + $2)); }
port_listen() { echo $(($(region_base "$1") + 10 + $2)); }
port_etcd_client() { echo $(($(region_base "$1") + 20)); }
port_etcd_peer() { echo $(($(region_base "$1") + 21)); }
port_postgres() { echo $(($(region_base "$1") + 30)); }
# Region $1's way out to replica $3 of region $2.
port_out() { echo $(($(region_base "$1") + 40 + 10 * $2 + $3)); }

# Comma-separated URLs `http://127.0.0.1:PORT` of replicas 1..REPLICAS, where PORT is what
# the port function $1 prints given the remaining arguments and the replica's number.
replica_urls() {
    local port_of="$1" i urls=()
    shift
    for ((i = 1; i <= REPLICAS; i++)); do
        urls+=("http://127.0.0.1:$("$port_of" "$@" "$i")")
    done
    (
        IFS=,
        echo "${urls[*]}"
    )
}

# Comma-separated URLs of region $2's replicas as region $1 reaches them (its out forwarders).
peer_urls() { replica_urls port_out "$1" "$2"; }

# Comma-separated URLs of region $1's replicas' own listen addresses (health checks only).
listen_urls() { replica_urls port_listen "$1"; }

# Comma-separated public URLs of region $1's replicas (what clients use).
public_urls() { replica_urls port_public "$1"; }

# Prints "port<TAB>what" for every port of the deployment.
all_ports() {
    local r s i name
    for r in "${!REGIONS[@]}"; do
        name="${REGIONS[$r]}"
        for ((i = 1; i <= REPLICAS; i++)); do
            printf '%s\t%s\n' "$(port_public "$r" "$i")" "$name replica $i public address (forwarder)"
            printf '%s\t%s\n' "$(port_listen "$r" "$i")" "$name replica $i listen address (tandem serve)"
        done
        printf '%s\t%s\n' "$(port_etcd_client "$r")" "$name etcd client"
        printf '%s\t%s\n' "$(port_etcd_peer "$r")" "$name etcd peer"
        printf '%s\t%s\n' "$(port_postgres "$r")" "$name PostgreSQL"
        for s in "${!REGIONS[@]}"; do
            ((s == r)) && continue
            for ((i = 1; i <= REPLICAS; i++)); do
                printf '%s\t%s\n' "$(port_out "$r" "$s" "$i")" "$name way out to ${REGIONS[$s]} replica $i (forwarder)"
            done
        done
    done
}

# Succeeds when something listens on TCP port $1 (any address).
port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# Files of a region

region_dir() { echo "$RUN_DIR/$1"; }
pid_dir() { echo "$RUN_DIR/$1/pids"; }
config_file() { echo "$RUN_DIR/$1/config/replica-$2.toml"; }

# A TOML basic string holding $1 (quotes and backslashes escaped).
toml_string() {
    local text="$1"
    text="${text//\\/\\\\}"
    text="${text//\"/\\\"}"
    printf '"%s"' "$text"
}

# Writes region $1's replica $2's region.toml.
write_replica_config() {
    local r="$1" i="$2" name="${REGIONS[$1]}" s peers="" role
    for s in "${!REGIONS[@]}"; do
        ((s == r)) && continue
        [[ -n "$peers" ]] && peers+=", "
        peers+="${REGIONS[$s]} = \"$(peer_urls "$r" "$s")\""
    done
    if ((r == 0)); then role=active; else role=standby; fi
    local file
    file="$(config_file "$name" "$i")"
    {
        echo "# region.toml of $name replica $i, written by deploy/local/up.sh"
        echo "region = \"$name\""
        echo "listen = \"127.0.0.1:$(port_listen "$r" "$i")\""
        echo
        echo "[postgres]"
        echo "url = \"postgres://postgres@127.0.0.1:$(port_postgres "$r")/tandem\""
        echo "pool_size = 16"
        echo
        echo "[cluster]"
        echo "member_id = \"$name-$i\""
        echo "advertise = \"http://127.0.0.1:$(port_public "$r" "$i")\"   # through its forwarder"
        echo
        echo "[etcd]"
        echo "endpoints = [\"http://127.0.0.1:$(port_etcd_client "$r")\"]"
        echo "lease_ttl = \"2s\""
        echo
        echo "[dr]"
        echo "role = \"$role\""
        echo "active_region = \"${REGIONS[0]}\""
        echo "peers = { $peers }   # through this region's own forwarders"
        echo "peer_check_interval = \"1s\""
        echo
        echo "[replication]"
        echo "mode = \"$MODE\""
        echo "sync_timeout = \"2s\""
    } >"$file.tmp"
    mv -f "$file.tmp" "$file"
}
