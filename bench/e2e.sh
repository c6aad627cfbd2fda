#!/usr/bin/env bash
# End-to-end: wrk through the gateway with the prometheus plugin on (every metric switch
# true) vs the same configuration with the plugin disabled vs nginx proxying with no Lua
# at all. Interleaved repetitions; medians of requests/s, latency percentiles and worker
# CPU time per request (from /proc, steadier than requests/s on a shared machine).
# Prints a markdown section; its numbers go to OUT/e2e.tsv (bench/common.sh step_init).
# BENCH_SMOKE=1: one short repetition, only checks it runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "${BENCH_SMOKE:-0}" in 0 | "" | no | false) SMOKE=0 ;; *) SMOKE=1 ;; esac
REPS=${BENCH_E2E_REPS:-$([ "$SMOKE" = 1 ] && echo 1 || echo 5)}
DURATION=${BENCH_E2E_SECONDS:-$([ "$SMOKE" = 1 ] && echo 1 || echo 5)}
CONNS=${BENCH_E2E_CONNECTIONS:-16}

# shellcheck source=bench/gateway-common.sh
. "$ROOT/bench/gateway-common.sh"
step_init e2e

GW=$(mktemp -d /tmp/ngxprom-e2e.XXXXXX); BARE=$(mktemp -d /tmp/ngxprom-bare.XXXXXX)
chmod 755 "$GW" "$BARE"
PROXY=$(free_port); ADMIN=$(free_port); METRICS=$(free_port); UPSTREAM=$(free_port)
BPROXY=$(free_port); BUP=$(free_port)
cleanup() {
  for p in "$GW" "$BARE"; do
    if [ -f "$p/nginx.pid" ]; then kill -QUIT "$(cat "$p/nginx.pid")" 2>/dev/null || true; fi
  done
  sleep 0.5
  rm -rf "$GW" "$BARE"
}
trap cleanup EXIT

# The same access log setting (off) on both sides.
start_gateway "$GW" "$PROXY" "$ADMIN" "$METRICS" "$UPSTREAM"

mkdir -p "$BARE/logs"
USER_LINE=$(if [ "$(id -u)" = 0 ]; then echo "user nobody nogroup;"; fi)
cat >"$BARE/nginx.conf" <<CONF
$USER_LINE
worker_processes 2;
error_log $BARE/logs/error.log notice;
pid $BARE/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    upstream bare_upstream { server 127.0.0.1:$BUP; keepalive 64; }
    server {
        listen 127.0.0.1:$BPROXY;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://bare_upstream;
        }
    }
    server {
        listen 127.0.0.1:$BUP;
        location / { default_type text/plain; return 200 "hello from the demo upstream\n"; }
    }
}
CONF
"$NGINX_BIN" -p "$BARE" -c "$BARE/nginx.conf"
sleep 1

PLUGIN=$(curl -fsS "localhost:$ADMIN/plugins" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
set_plugin() {
  curl -fsS -o /dev/null -X PATCH "localhost:$ADMIN/plugins/$PLUGIN" -H 'Content-Type: application/json' \
    -d "{\"enabled\": $1}"
  sleep 1.5  # every worker picks the change up within a second
}

RESULTS=$(mktemp)
run() {  # case port prefix
  local before after out
  before=$(workers_cpu "$3")
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$2/")
  after=$(workers_cpu "$3")
  wrk_summary "$1" $((after - before)) "$out" >>"$RESULTS"
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  [ -z "$non2xx" ] || { log "$1: $non2xx non-2xx responses"; exit 1; }
}

for rep in $(seq "$REPS"); do
  set_plugin true;  run plugin_on "$PROXY" "$GW"
  set_plugin false; run plugin_off "$PROXY" "$GW"
  run bare_nginx "$BPROXY" "$BARE"
  log "repetition $rep/$REPS done"
done
set_plugin true
# The plugin really recorded: the scrape counts what wrk sent with the plugin on.
COUNTED=$(curl -fsS "localhost:$METRICS/metrics" | awk -F' ' '/^gateway_http_requests_total\{service="demo",route="root",code="200"/ {s += $2} END {print s + 0}')
[ "$COUNTED" -gt 0 ] || { log "the plugin recorded nothing"; exit 1; }

# Instructions per request (the plugin's cost, deterministic where CPU time is noise): the same gateway in one
# process under callgrind (master_process off), W warm-up requests through the proxy,
# counters zeroed, N measured, a dump; plugin on and off interleaved, CG_REPS times;
# and a third case, plugin on with the demo service named by a host name (resolved,
# from a hosts file of the benchmark's: the request path reads the same cache entry a
# DNS answer fills) instead of its address; a name as long as the address, so the Host
# header sent upstream is as long too.
declare -A IR=()
CG_NOTE=""
if [ "$SMOKE" = 1 ] || [ "${BENCH_CALLGRIND:-1}" = 0 ]; then
  CG_NOTE="skipped ($([ "$SMOKE" = 1 ] && echo "smoke run" || echo "BENCH_CALLGRIND=0"))"
elif ! command -v callgrind_control >/dev/null; then
  CG_NOTE="valgrind is not installed"
else
  CG_W=${BENCH_E2E_CG_WARM:-1000}; CG_N=${BENCH_E2E_CG_N:-2000}; CG_REPS=${BENCH_E2E_CG_REPS:-3}
  CG=$(mktemp -d /tmp/ngxprom-e2e-cg.XXXXXX); chmod 755 "$CG"
  CPROXY=$(free_port); CADMIN=$(free_port); CMETRICS=$(free_port); CUP=$(free_port)
  printf '127.0.0.1 demo.test\n' >"$CG/hosts"
  "$ROOT/scripts/render-conf.sh" conf/gateway.conf "$CG" PROXY_PORT="$CPROXY" ADMIN_PORT="$CADMIN" \
    METRICS_PORT="$CMETRICS" UPSTREAM_PORT="$CUP" DNS_HOSTSFILE="$CG/hosts" >/dev/null
  sed -i "s|access_log $CG/logs/access.log;|access_log off;|" "$CG/nginx.conf"
  callgrind_nginx "$CG"; VG=$CG_PID
  for _ in $(seq 600); do curl -sf -o /dev/null "localhost:$CPROXY/" && break; sleep 0.2; done
  curl -sf -o /dev/null "localhost:$CPROXY/" || { log "the gateway under valgrind did not start"; exit 1; }
  CGPLUGIN=$(curl -fsS "localhost:$CADMIN/plugins" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  curls() {  # COUNT GETs through the proxy on one keep-alive connection
    gets "$CG/curl-$1.cfg" "$1" "http://127.0.0.1:$CPROXY/" ||
      { log "requests through the gateway under valgrind failed"; exit 1; }
  }
  for rep in $(seq "$CG_REPS"); do
    for state in true false named; do
      enabled=true host=127.0.0.1
      [ "$state" = false ] && enabled=false
      [ "$state" = named ] && host=demo.test
      curl -fsS -o /dev/null -X PATCH "localhost:$CADMIN/plugins/$CGPLUGIN" -H 'Content-Type: application/json' \
        -d "{\"enabled\": $enabled}"
      curl -fsS -o /dev/null -X PATCH "localhost:$CADMIN/services/demo" -H 'Content-Type: application/json' \
        -d "{\"host\": \"$host\"}"
      sleep 3   # the change reaches the worker within a second; valgrind is slow
      curls "$CG_W"
      callgrind_window "$CG" "e2e-$state-$rep" curls "$CG_N" || { log "no callgrind dump for plugin $state"; exit 1; }
      IR[$state]+="$(per_request "$CG_DUMP" "$CG_N") "
    done
  done
  kill -QUIT "$VG"; wait "$VG" 2>/dev/null || true
  clean_log "$CG"
  rm -rf "$CG"
fi

col() { awk -v c="$1" -v k="$2" '$1 == c {print $k}' "$RESULTS" | median; }
for c in plugin_on plugin_off bare_nginx; do
  declare "RPS_$c=$(col $c 2)" "P50_$c=$(col $c 3)" "P99_$c=$(col $c 4)" "CPU_$c=$(col $c 5)"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.1f%%" : "n/a"), 100 * a / b }'; }
# Numbers (bench/run.sh's targets): the medians per configuration (CONFIG.rps, .p50_ms,
# .p99_ms, .cpu_us), and plugin on against off: rps_pct (% of the requests/s), cpu_pct
# (% more worker CPU per request).
for c in plugin_on plugin_off bare_nginx; do
  rps="RPS_$c"; p50="P50_$c"; p99="P99_$c"; cpu="CPU_$c"
  put_value "$c.rps" "${!rps}"; put_value "$c.p50_ms" "${!p50}"; put_value "$c.p99_ms" "${!p99}"; put_value "$c.cpu_us" "${!cpu}"
done
# shellcheck disable=SC2154  # RPS_* and CPU_*: declared above
put_value rps_pct "$(awk -v a="$RPS_plugin_on" -v b="$RPS_plugin_off" 'BEGIN{ if (b > 0) printf "%.1f", 100 * a / b }')"
# shellcheck disable=SC2154
put_value cpu_pct "$(awk -v a="$CPU_plugin_on" -v b="$CPU_plugin_off" 'BEGIN{ if (b > 0) printf "%+.1f", 100 * (a / b - 1) }')"

echo "### End to end: the gateway with the prometheus plugin on, off, and nginx without Lua"
echo
echo "| configuration | requests/s | vs plugin off | p50 ms | p99 ms | worker CPU µs/request | vs plugin off |"
echo "|---|---|---|---|---|---|---|"
for c in plugin_on plugin_off bare_nginx; do
  rps="RPS_$c"; p50="P50_$c"; p99="P99_$c"; cpu="CPU_$c"
  printf '| %s | %.0f | %s | %.2f | %.2f | %.1f | %s |\n' "$c" "${!rps}" "$(ratio "${!rps}" "$RPS_plugin_off")" \
    "${!p50}" "${!p99}" "${!cpu}" "$(ratio "${!cpu}" "$CPU_plugin_off")"
done
echo
echo "- \`wrk -t1 -c$CONNS -d${DURATION}s --latency\`, $REPS interleaved repetitions, medians; 2 nginx workers; the proxy"
echo "  and the upstream are the same nginx (\`conf/gateway.conf\`, seeded demo service and route), access log off."
echo "- plugin_on: the seeded global prometheus plugin with status, latency, bandwidth and upstream health"
echo "  metrics; plugin_off: the same plugin disabled through the Admin API; bare_nginx: \`proxy_pass\` only."
echo "- Worker CPU per request: utime+stime of the worker processes from /proc over the run, divided by the"
echo "  requests wrk completed; it includes the upstream's share (same nginx)."
if [ -z "$CG_NOTE" ]; then
  irstat() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {printf "%s (%s–%s)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }
  irmed() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | median; }
  put_value ir_on "$(irmed "${IR[true]}")"; put_value ir_off "$(irmed "${IR[false]}")"
  put_value ir_named "$(irmed "${IR[named]}")"
  echo "- Instructions per proxied request (callgrind, the same gateway in one process, $CG_W warm-up then $CG_N measured requests on one keep-alive connection, $CG_REPS repetitions interleaved, median (min–max)): plugin on $(irstat "${IR[true]}"), off $(irstat "${IR[false]}"); **the plugin adds $(awk -v a="$(irmed "${IR[true]}")" -v b="$(irmed "${IR[false]}")" 'BEGIN {printf "%.0f", a - b}') instructions per request**, with every metric switch on (the measure of the plugin's cost: the CPU column above is inside this machine's noise)."
  echo "- The same with the service named by a host name (\`demo.test\`, resolved from a hosts file), plugin on: $(irstat "${IR[named]}") instructions per request, $(awk -v a="$(irmed "${IR[named]}")" -v b="$(irmed "${IR[true]}")" 'BEGIN {printf "%+.0f", a - b}') against its address."
else
  echo "- Instructions per proxied request: $CG_NOTE."
fi
rm -f "$RESULTS"
