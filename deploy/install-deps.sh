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

if [ -n "$missing" ]; then
    echo "installing:$missing"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi

command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install Rust (https://rustup.rs), version 1.89 or newer" >&2
    exit 1
}
