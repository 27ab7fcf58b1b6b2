# shellcheck shell=bash
# Sourced (never run) by up.sh, region.sh and down.sh: every function they share. The port
# layout and the run dir's files are described at the top of lib/layout.sh.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/layout.sh"
source "$(dirname "${BASH_SOURCE[0]}")/process.sh"
source "$(dirname "${BASH_SOURCE[0]}")/region.sh"
