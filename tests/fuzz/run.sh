#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan+UBSan, own build dir) and run each for SECONDS (default 20),
# seeded from tests/unit/data. Fails on the first crash, leak, timeout or failed property; the input that
# did it is left in $CTCT_FUZZ_BUILD/artifacts/.
# Usage: tests/fuzz/run.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-20}
build=${CTCT_FUZZ_BUILD:-$root/build-fuzz}
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCTCT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null

data=$root/tests/unit/data
declare -A seeds=(
  [fuzz_conntrack_stat]="$data/nf_conntrack_stat_6.18.txt $data/nf_conntrack_stat_busy.txt"
  [fuzz_nfqueue]="$data/nfnetlink_queue.txt"
  [fuzz_kallsyms]="$data/kallsyms_6.18.txt $data/kallsyms_6.1_modules.txt"
  [fuzz_duration]=""
  [fuzz_event]=""
)
# Durations and events have no captured sample: a few hand-made seeds.
mkseeds() {
  local dir=$1 target=$2
  case $target in
    fuzz_duration) for s in 250ms 30s 5m 1h 2 999999999999h 0s 1x; do printf '%s' "$s" >"$dir/$s"; done ;;
    fuzz_event) head -c 312 /dev/zero >"$dir/zero"
                { printf '\001\000\000\000\001\000\000\000\001\000\000\000\037\000\000\000'; head -c 296 /dev/urandom; head -c 8 /dev/zero;
                  printf 'NETFILTER_DROP\000nf_hook_slow+0x70'; } >"$dir/drop" ;;
  esac
}

mkdir -p "$build/artifacts"
status=0
printf '%-22s %10s %8s %s\n' target executions seconds result
for t in fuzz_conntrack_stat fuzz_nfqueue fuzz_kallsyms fuzz_duration fuzz_event; do
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  for f in ${seeds[$t]}; do cp -f "$f" "$corpus/"; done
  mkseeds "$corpus" "$t"
  log=$build/$t.log
  start=$(date +%s)
  if "$build/tests/fuzz/$t" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$build/artifacts/$t-" "$corpus" >"$log" 2>&1; then
    result=ok
  else
    result="FAIL (see $log)"; status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  printf '%-22s %10s %8s %s\n' "$t" "${execs:-?}" "$(( $(date +%s) - start ))" "$result"
  [ "$result" = ok ] || grep -m5 -E 'ERROR|property failed|runtime error|SUMMARY' "$log" >&2 || true
done
exit $status
