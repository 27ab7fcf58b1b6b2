# shellcheck shell=bash
# deploy/local: messages, required tools, and the deployment's settings (RUN_DIR/deployment.conf).

# deploy/local itself.
LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# shellcheck disable=SC2034 # used by the scripts that source this file
DEFAULT_RUN_DIR="$LOCAL_DIR/run"
SCRIPT_NAME="$(basename "$0")"

# Read what we use of the caller's TANDEM_* settings, then drop them all: a `tandem serve`
# started here must take its settings from its region.toml only (env vars win over the file).
PG_BIN="${TANDEM_PG_BIN:-/usr/lib/postgresql/15/bin}"
# shellcheck disable=SC2034 # used by up.sh
ENV_TANDEM_BIN="${TANDEM_BIN:-}"
for variable in "${!TANDEM_@}"; do
    unset "$variable"
done
unset variable

# Seconds to wait, per process, for a clean stop before SIGKILL.
STOP_GRACE="${STOP_GRACE:-15}"
# The user PostgreSQL runs as when the scripts run as root (initdb refuses root).
PG_USER=postgres
# Most regions and replicas the port layout has room for.
MAX_REGIONS=6
MAX_REPLICAS=9

die() {
    echo "$SCRIPT_NAME: $*" >&2
    exit 1
}

usage_error() {
    echo "$SCRIPT_NAME: $*" >&2
    echo "run \`$SCRIPT_NAME --help\` for usage" >&2
    exit 2
}

say() {
    echo "$SCRIPT_NAME: $*"
}

# The absolute form of path $1 (it need not exist).
absolute_path() {
    realpath -m -- "$1"
}

# Fails unless $1 is a decimal integer in [$2, $3]; $4 names it in the message.
check_int() {
    local value="$1" low="$2" high="$3" what="$4"
    if ! [[ "$value" =~ ^[0-9]{1,6}$ ]] || ((10#$value < low || 10#$value > high)); then
        usage_error "$what: expected an integer from $low to $high, found \`$value\`"
    fi
}

# Fails with the Debian package to install for each missing tool.
require_tools() {
    local missing=() pair tool package
    for pair in etcd:etcd-server etcdctl:etcd-client socat:socat setsid:util-linux \
        setpriv:util-linux runuser:util-linux flock:util-linux realpath:coreutils; do
        tool="${pair%%:*}"
        package="${pair#*:}"
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool (Debian package $package)")
    done
    for tool in initdb postgres pg_isready psql createdb; do
        [[ -x "$PG_BIN/$tool" ]] || missing+=("$PG_BIN/$tool (Debian package postgresql-15, or set TANDEM_PG_BIN to the directory holding it)")
    done
    if ((${#missing[@]} > 0)); then
        printf '%s: missing: %s\n' "$SCRIPT_NAME" "${missing[@]}" >&2
        die "install them (deploy/install-deps.sh installs all of them)"
    fi
    if ((EUID == 0)) && ! id "$PG_USER" >/dev/null 2>&1; then
        die "running as root, PostgreSQL must run as the user \`$PG_USER\`, which does not exist: create it (deploy/install-deps.sh does)"
    fi
}

# ---------------------------------------------------------------------------------------------
# Deployment settings (RUN_DIR/deployment.conf)

# Fails unless "$@" are 2..MAX_REGIONS distinct region names of the form [a-z][a-z0-9-]*.
check_regions() {
    local name seen=" "
    if (($# < 2 || $# > MAX_REGIONS)); then
        usage_error "--regions: expected 2 to $MAX_REGIONS comma-separated region names (the first is active), found $# in \`$(
            IFS=,
            echo "$*"
        )\`"
    fi
    for name in "$@"; do
        if ! [[ "$name" =~ ^[a-z][a-z0-9-]{0,31}$ ]]; then
            usage_error "--regions: region name \`$name\`: expected a lowercase letter then up to 31 of a-z, 0-9 and -"
        fi
        if [[ "$seen" == *" $name "* ]]; then
            usage_error "--regions: region \`$name\` is named twice"
        fi
        seen+="$name "
    done
}

# Writes RUN_DIR/deployment.conf from REGIONS, BASE_PORT, REPLICAS, MODE and TANDEM.
write_deployment() {
    local file="$RUN_DIR/deployment.conf"
    {
        echo "# written by deploy/local/up.sh; read by region.sh and down.sh"
        echo "regions=$(
            IFS=,
            echo "${REGIONS[*]}"
        )"
        echo "base_port=$BASE_PORT"
        echo "replicas=$REPLICAS"
        echo "mode=$MODE"
        echo "tandem=$TANDEM"
        echo "pg_bin=$PG_BIN"
    } >"$file.tmp"
    mv -f "$file.tmp" "$file"
}

# Reads RUN_DIR/deployment.conf into REGIONS, BASE_PORT, REPLICAS, MODE, TANDEM and PG_BIN.
load_deployment() {
    local file="$RUN_DIR/deployment.conf" key value text line=0
    [[ -f "$file" ]] || die "$RUN_DIR is not a deployment made by up.sh (no deployment.conf there); pass the run dir up.sh used with --run-dir"
    REGIONS=()
    BASE_PORT="" REPLICAS="" MODE="" TANDEM=""
    while IFS= read -r text || [[ -n "$text" ]]; do
        line=$((line + 1))
        [[ -z "$text" || "$text" == \#* ]] && continue
        [[ "$text" == *=* ]] || die "$file:$line: expected key=value, found \`$text\`"
        key="${text%%=*}"
        value="${text#*=}"
        case "$key" in
        regions) IFS=, read -r -a REGIONS <<<"$value" ;;
        base_port) BASE_PORT="$value" ;;
        replicas) REPLICAS="$value" ;;
        mode) MODE="$value" ;;
        tandem) TANDEM="$value" ;;
        pg_bin) PG_BIN="$value" ;;
        *) die "$file:$line: unknown key \`$key\`" ;;
        esac
    done <"$file"
    check_regions "${REGIONS[@]}"
    check_int "$BASE_PORT" 1024 $((65535 - 100 * ${#REGIONS[@]} + 1)) "$file: base_port"
    check_int "$REPLICAS" 1 "$MAX_REPLICAS" "$file: replicas"
    [[ "$MODE" == async || "$MODE" == sync ]] || die "$file: mode: expected async or sync, found \`$MODE\`"
    [[ -x "$TANDEM" ]] || die "$file: tandem: \`$TANDEM\` is not an executable file"
}

# The index of region $1 in REGIONS (printed); fails naming the deployment's regions.
region_index() {
    local index
    for index in "${!REGIONS[@]}"; do
        if [[ "${REGIONS[$index]}" == "$1" ]]; then
            echo "$index"
            return 0
        fi
    done
    die "unknown region \`$1\`: this deployment has ${REGIONS[*]}"
}
