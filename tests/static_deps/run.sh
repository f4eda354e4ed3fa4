#!/usr/bin/env bash
# scripts/build-static-deps.sh's prometheus-cpp: found by find_package(prometheus-cpp CONFIG) through
# CMAKE_PREFIX_PATH, linked -static (prometheus-cpp::pull with civetweb), run in an empty chroot, where its
# exposer binds 127.0.0.1 (a numeric address needs no NSS) and serializes the counter it was given.
# usage: run.sh   (root, for the chroot)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$("$here/../../scripts/build-static-deps.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake -S "$here" -B "$work/b" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/b" 2>&1 | grep -i warning || true
l=$(ldd "$work/b/fpcheck" 2>&1 || true); grep -q "not a dynamic executable" <<<"$l"
mkdir "$work/root" && cp "$work/b/fpcheck" "$work/root/"
out=$(chroot "$work/root" /fpcheck)
echo "$out"
grep -qx 'x_total 3' <<<"$out" && [ "$(tail -1 <<<"$out")" = 1 ] && echo "static prometheus-cpp: ok"
