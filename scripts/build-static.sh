#!/usr/bin/env bash
# Builds the portable binary: ctconfirm-trace linked fully statically (-DCTCT_STATIC=ON), into
# $CTCT_STATIC_BUILD (default ./build-static). Prints the binary's path. Extra arguments go to cmake.
# Everything it links has a static archive in Debian (libbpf.a, libelf.a, libz.a, libstdc++.a, libc.a),
# so nothing is built from source; see docs/install.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CTCT_STATIC_BUILD:-$root/build-static}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCTCT_STATIC=ON -DBUILD_TESTING=OFF "$@" >/dev/null
cmake --build "$build" -j"$(nproc)" --target ctconfirm-trace >&2
echo "$build/ctconfirm-trace"
