#!/usr/bin/env bash
# Static archives Debian does not ship, built from Debian's own source packages (bookworm deb-src) into
# ~/.cache/ctconfirm-trace/static-deps (or $CTCT_STATIC_DEPS); prints that prefix. Today: prometheus-cpp
# (core + pull, no push, no tests) against a static civetweb, for the metrics exposer; then
#   cmake -DCTCT_STATIC=ON -DCMAKE_PREFIX_PATH=<prefix>   finds the static prometheus-cpp::pull.
# A private apt configuration fetches the sources, so the system's sources.list is left alone.
set -euo pipefail
prefix=${CTCT_STATIC_DEPS:-$HOME/.cache/ctconfirm-trace/static-deps}
work=${prefix}.work
stamp=$prefix/.built-prometheus-cpp-1.0.1-civetweb-1.15
if [ -e "$stamp" ]; then echo "$prefix"; exit 0; fi
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src" "$prefix"
echo "deb-src http://deb.debian.org/debian bookworm main" >"$work/apt/sources.list"
apt_opts=(-o Dir::Etc::SourceList="$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache")
apt-get "${apt_opts[@]}" -qq update
cd "$work/src"
[ -d civetweb-1.15+dfsg ] || apt-get "${apt_opts[@]}" -qq source civetweb=1.15+dfsg-4 >/dev/null
[ -d prometheus-cpp-1.0.1 ] || apt-get "${apt_opts[@]}" -qq source prometheus-cpp=1.0.1-1 >/dev/null
jobs=$(nproc)
# civetweb: the library and its C++ wrapper only (prometheus-cpp's pull exposer uses both), no server binary
cmake -S civetweb-1.15+dfsg -B "$work/b-civetweb" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
	-DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_SHARED_LIBS=OFF -DCIVETWEB_ENABLE_CXX=ON \
	-DCIVETWEB_BUILD_TESTING=OFF -DCIVETWEB_ENABLE_SERVER_EXECUTABLE=OFF -DCIVETWEB_ENABLE_SSL=OFF \
	-DCIVETWEB_ENABLE_LUA=OFF -DCIVETWEB_ENABLE_DUKTAPE=OFF -DCIVETWEB_ENABLE_WEBSOCKETS=OFF \
	-DCIVETWEB_ENABLE_ASAN=OFF -DCIVETWEB_INSTALL_EXECUTABLE=OFF >/dev/null
cmake --build "$work/b-civetweb" -j"$jobs" >/dev/null
cmake --install "$work/b-civetweb" >/dev/null
cmake -S prometheus-cpp-1.0.1 -B "$work/b-prometheus" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
	-DCMAKE_PREFIX_PATH="$prefix" -DBUILD_SHARED_LIBS=OFF -DENABLE_PUSH=OFF -DENABLE_PULL=ON -DENABLE_COMPRESSION=OFF \
	-DENABLE_TESTING=OFF -DUSE_THIRDPARTY_LIBRARIES=OFF -DGENERATE_PKGCONFIG=OFF >/dev/null
cmake --build "$work/b-prometheus" -j"$jobs" >/dev/null
cmake --install "$work/b-prometheus" >/dev/null
touch "$stamp"
echo "$prefix"
