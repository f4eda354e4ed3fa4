#!/usr/bin/env bash
# Installs everything ctconfirm-trace needs to build, run and test, from Debian only.
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config clang llvm
  libbpf-dev bpftool libelf-dev zlib1g-dev
  libcli11-dev nlohmann-json3-dev googletest libgtest-dev libbenchmark-dev
  libnetfilter-queue-dev libmnl-dev libnftnl-dev prometheus-cpp-dev
  iproute2 iptables nftables conntrack kmod
  qemu-system-x86 busybox-static cpio zstd xz-utils jq curl
  help2man systemd python3-yaml
  # tests/e2e/metrics.sh runs the server binary itself on 127.0.0.1 (where systemd runs, the package also
  # enables its own service on :9090, which the test does not use)
  prometheus
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
