#!/usr/bin/env bash
# The tool's main job on a fresh Debian machine: install what it needs, build, trace.
# usage: sudo scripts/run.sh [ctconfirm-trace options]   e.g. sudo scripts/run.sh --json --duration 60s
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" -DBUILD_TESTING=OFF
exec "${CTCT_BUILD:-$root/build}/ctconfirm-trace" "$@"
