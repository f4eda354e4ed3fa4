#!/usr/bin/env bash
# Kernel test of the Prometheus metrics: a real Prometheus server (Debian's, on 127.0.0.1, scraping every
# second) scrapes the tracer during a collision scenario whose queue is also too short (--maxlen), and
# PromQL over its HTTP API must give
#   confirm-drop counter == Δinsert_failed of the router netns == confirm_drop events,
#   queue-drop counter {cause="queue_full", queue=Q} == Δqueue_dropped == queue_drop events,
#   queue-time histogram _count == events the tracer reported with a time in queue;
# the textfile (--metrics-textfile) must say the same at exit; and a --metrics-listen on Prometheus' own
# port must be refused with one line, exit 2. Every wait is bounded; the trap kills what was started.
# usage: metrics.sh [BACKEND]     (root; default tracepoint, the backend this host allows)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BACKEND=${1:-tracepoint}
PAIRS=20 HOLD_MS=200 MAXLEN=20
PROM=${PROM:-/usr/bin/prometheus}
PROM_PID=
# the TSDB in /tmp: in the VMs $WORK is the 9p results share, and the TSDB mmaps its files
TSDB=$(mktemp -d /tmp/ctct-tsdb.XXXXXX)
cleanup_metrics() {
	[ -z "$PROM_PID" ] || { kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null; }
	rm -rf "$TSDB"
	cleanup
}
trap cleanup_metrics EXIT INT TERM
command -v jq >/dev/null && command -v curl >/dev/null && [ -x "$PROM" ] ||
	{ echo "metrics.sh: needs $PROM, curl and jq (scripts/install-deps.sh)" >&2; exit 2; }

# PromQL instant query; prints the single value, or "none" for an empty result
promql() {
	curl -sf --max-time 5 --data-urlencode "query=$1" "http://127.0.0.1:$PROM_PORT/api/v1/query" |
		jq -r 'if .data.result | length == 0 then "none" else .data.result[0].value[1] end'
}

PROM_PORT=$(free_port) METRICS_PORT=$(free_port)
[ "$PROM_PORT" != "$METRICS_PORT" ] || METRICS_PORT=$(free_port)
cat >"$WORK/prometheus.yml" <<YML
global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }
scrape_configs:
  - job_name: ctct
    static_configs: [ { targets: ["127.0.0.1:$METRICS_PORT"] } ]
YML
"$PROM" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$TSDB" \
	--web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
ready=
for i in $(seq 300); do # startup under load: seconds
	curl -sf --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null && { ready=1; break; }
	kill -0 "$PROM_PID" 2>/dev/null || break
	sleep 0.1
done
[ -n "$ready" ] || { not_ok "prometheus did not become ready: $(tail -3 "$WORK/prometheus.log")"; finish; exit; }
ok "prometheus ready on 127.0.0.1:$PROM_PORT"

# a port in use (Prometheus' own): one line, exit 2, before anything is loaded
timeout 20 "$TRACER" --metrics-listen "127.0.0.1:$PROM_PORT" -d 1s >"$WORK/busy.out" 2>"$WORK/busy.err"
rc=$?
check "--metrics-listen on a port in use: exit" "$rc" 2
check "--metrics-listen on a port in use: one stderr line naming the cause" \
	"$(wc -l <"$WORK/busy.err") $(grep -c 'Address already in use' "$WORK/busy.err")" "1 1"

TAG="$BACKEND metrics"
TEXTFILE="$WORK/ctconfirm_trace.prom"
topo_up && queue_after_nat && start_listener $HOLD_MS --maxlen $MAXLEN || { not_ok "$TAG: setup failed"; finish; exit; }
IF0=$(ct_stat insert_failed) QD0=$(nfq_stat queue_dropped)
start_tracer "$BACKEND" --metrics-listen "127.0.0.1:$METRICS_PORT" --metrics-textfile "$TEXTFILE" \
	--metrics-textfile-interval 1s || { not_ok "$TAG: tracer did not start"; finish; exit; }
read -r sent recv < <(RECV_IDLE_MS=4000 pairs_traffic 4 "$PAIRS" 40000 40000)
sleep 1.5 # pending drops without a free are swept after 1 s
IF1=$(ct_stat insert_failed) QD1=$(nfq_stat queue_dropped)
DIF=$((IF1 - IF0)) DQD=$((QD1 - QD0))
# a scrape that started after everything was counted
t_done=$(date +%s.%N) scraped=
for i in $(seq 150); do
	ts=$(promql 'timestamp(up{job="ctct"} == 1)')
	[ "$ts" != none ] && [ -n "$ts" ] && awk -v a="$ts" -v b="$t_done" 'BEGIN { exit !(a > b + 0.1) }' && { scraped=1; break; }
	sleep 0.1
done
[ -n "$scraped" ] || not_ok "$TAG: no scrape of the tracer after the traffic within 15 s (last: ${ts:-none})"
P_CONFIRM=$(promql 'sum(ctconfirm_trace_confirm_drops_total)')
P_QFULL=$(promql "sum(ctconfirm_trace_queue_drops_total{cause=\"queue_full\",queue=\"$QUEUE\"})")
P_QTIME=$(promql 'sum(ctconfirm_trace_queue_time_seconds_count) or vector(0)')
P_QSUM=$(promql 'sum(ctconfirm_trace_queue_time_seconds_sum) or vector(0)')
P_RINGBUF=$(promql 'sum(ctconfirm_trace_losses_total{reason="ringbuf_full"})')
P_BACKEND=$(promql "count(ctconfirm_trace_backend_info{backend=\"$BACKEND\"})")
stop_tracer || not_ok "$TAG: tracer exit status $?"

E_CONFIRM=$(events_of_type confirm_drop | wc -l)
E_QFULL=$(jq -c 'select(.type == "queue_drop" and .cause == "queue_full")' "$WORK/trace.json" | wc -l)
E_QTIME=$(jq -c 'select(.queue.latency_ns != null)' "$WORK/trace.json" | wc -l)
echo "# sent $sent received $recv; Δinsert_failed $DIF, Δqueue_dropped $DQD; events: confirm_drop $E_CONFIRM," \
	"queue_full $E_QFULL, with time in queue $E_QTIME"
check "$TAG: the scenario has confirm drops and queue-full drops" "$([ "$DIF" -gt 0 ] && [ "$DQD" -gt 0 ] && echo yes)" yes
check "$TAG: packets lost == Δinsert_failed + Δqueue_dropped" "$((sent - recv))" "$((DIF + DQD))"
check "$TAG: PromQL confirm_drops_total == Δinsert_failed" "$P_CONFIRM" "$DIF"
check "$TAG: confirm_drop events == Δinsert_failed" "$E_CONFIRM" "$DIF"
check "$TAG: PromQL queue_drops_total{queue_full,queue=$QUEUE} == Δqueue_dropped" "$P_QFULL" "$DQD"
check "$TAG: queue_drop/queue_full events == Δqueue_dropped" "$E_QFULL" "$DQD"
check "$TAG: PromQL queue_time_seconds_count == events with a time in queue" "$P_QTIME" "$E_QTIME"
E_QSUM=$(jq -r 'select(.queue.latency_ns != null) | .queue.latency_ns' "$WORK/trace.json" | awk '{ s += $1 } END { printf "%.3f", s / 1e9 }')
check "$TAG: PromQL queue_time_seconds_sum == the events' time in queue (ms)" "$(awk -v v="$P_QSUM" 'BEGIN { printf "%.3f", v }')" "$E_QSUM"
# function backends see the queue: every confirm drop was held HOLD_MS, so the histogram has them
if queue_hooked; then
	check "$TAG: queue hooked: every confirm drop has a time in queue" "$([ "$E_QTIME" -ge "$DIF" ] && echo yes)" yes
fi
check "$TAG: PromQL ringbuf_full losses" "$P_RINGBUF" 0
check "$TAG: PromQL backend_info names the backend" "$P_BACKEND" 1
# the textfile as node_exporter would read it, written at exit
tsum() { awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $2 } END { print s + 0 }' "$TEXTFILE"; }
check "$TAG: textfile confirm_drops_total == Δinsert_failed" "$(tsum ctconfirm_trace_confirm_drops_total)" "$DIF"
check "$TAG: textfile queue_drops_total == Δqueue_dropped" "$(tsum ctconfirm_trace_queue_drops_total)" "$DQD"
check "$TAG: textfile has TYPE lines" "$(grep -c '^# TYPE ctconfirm_trace_confirm_drops_total counter$' "$TEXTFILE")" 1
check "$TAG: no temporary textfile left" "$(ls "$WORK" | grep -c '\.tmp$')" 0
topo_down
finish
