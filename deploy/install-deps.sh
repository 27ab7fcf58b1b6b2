#!/bin/sh
# Installs what a fresh Debian machine lacks to build and test Tandem.
# Idempotent: installs only what is missing. Needs root (or sudo) only when something is missing.
set -eu

# Debian packages, each with a command that proves it is present.
#   build-essential: the C compiler that builds the bundled SQLite.
missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need cc build-essential
need make make
need awk gawk
need sleep coreutils
#   postgresql-15: the server binaries the tests start privately (initdb, pg_ctl, postgres in
#   /usr/lib/postgresql/15/bin); no cluster is created or started by the package install here.
[ -x "${TANDEM_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ] || command -v initdb >/dev/null 2>&1 \
    || missing="$missing postgresql-15"
#   runuser (util-linux): tests run as root start PostgreSQL as the `postgres` user.
need runuser util-linux
#   etcd-server: the tests and benchmarks start private etcd servers (leader election);
#   the package starts no service here. etcd-client: `etcdctl`, for looking at a cluster.
need etcd etcd-server
need etcdctl etcd-client
#   protobuf-compiler: the build script of the etcd-client crate runs `protoc`.
need protoc protobuf-compiler
#   socat: the TCP forwarders of deploy/local (a region is partitioned by stopping them).
need socat socat

if [ -n "$missing" ]; then
    echo "installing:$missing"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    case "$missing" in
    *postgresql-15*)
        # Binaries only: do not let the package create and start a `main` cluster.
        $sudo mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
        ;;
    esac
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi

command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install Rust (https://rustup.rs), version 1.92 or newer" >&2
    exit 1
}

# The postgres user owns the private clusters tests start when they run as root.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
fi
