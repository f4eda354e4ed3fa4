#!/usr/bin/env bash
# Builds the portable binary: ctconfirm-trace linked fully statically (-DCTCT_STATIC=ON), into
# $CTCT_STATIC_BUILD (default ./build-static). Prints the binary's path. Extra arguments go to cmake.
# libbpf.a, libelf.a, libz.a, libstdc++.a, libc.a come from Debian's -dev packages; prometheus-cpp and
# civetweb (the metrics exposer) have no static archive there and are built from Debian's source packages
# once (scripts/build-static-deps.sh, ~50 s, cached); see docs/install.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CTCT_STATIC_BUILD:-$root/build-static}
deps=$("$root/scripts/build-static-deps.sh")
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCTCT_STATIC=ON -DCMAKE_PREFIX_PATH="$deps" -DBUILD_TESTING=OFF "$@" >/dev/null
cmake --build "$build" -j"$(nproc)" --target ctconfirm-trace >&2
echo "$build/ctconfirm-trace"
