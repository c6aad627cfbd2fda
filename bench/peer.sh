#!/usr/bin/env bash
# ngx-prometheus beside nginx-lua-prometheus (the peer), in one nginx with 2 workers
# (bench/peer.conf, bench/peer_bench.lua): the same families recorded by the same Lua
# calls in both libraries.
#
#   bench/peer.sh                 full run; prints a Markdown section (BENCHMARKS.md)
#   BENCH_SMOKE=1 bench/peer.sh   smaller sizes, one repetition
# Its numbers (medians, MEASURE.LIB) go to OUT/peer.tsv (bench/common.sh step_init).
#
# 1. Tight loops: CPU ns per call of counter inc(1, {a, b, c}), histogram
#    observe(v, {route}) and gauge set(v, {route}) in one worker (os.clock), the
#    libraries interleaved, R repetitions.
# 2. Scrape: ROUTES routes recorded in each library (a counter series and a histogram
#    series with 3 observations per route); scrape time (curl time_total) and bytes,
#    alternating, 5 each.
# 3. Other requests while scraping: p99 latency of `return 200` requests (wrk, 16
#    connections) with no scrape, or with the ROUTES-route endpoint of one library
#    scraped once a second; variants rotated over R repetitions.
# 4. Visible series: 10,000 new series recorded in one burst, half by each worker,
#    then one scrape at once: how many of them it shows.
#
# The peer is loaded from ../shared/peers/nginx-lua-prometheus (BENCH_PEER_DIR); when it
# is absent its column says so and the run still succeeds.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "${BENCH_SMOKE:-0}" in 0 | "" | no | false) SMOKE=0 ;; *) SMOKE=1 ;; esac
if [ "$SMOKE" = 1 ]; then
  N=100000; ROUTES=1000; VISIBLE=1000; REPS=1; LOAD_SECS=2; SCRAPES=2
else
  N=2000000; ROUTES=10000; VISIBLE=10000; REPS=3; LOAD_SECS=8; SCRAPES=5
fi

# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
step_init peer
find_peer
LIBS=(ours); [ "$PEER" = false ] || LIBS+=(peer)
command -v wrk >/dev/null || die "wrk is not installed (make setup-test)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ngxprom-peer.XXXXXX")
chmod 755 "$WORK"   # workers (not root) require lib/ngx_prometheus.so from here
MASTER=""
cleanup() {
  [ -z "$MASTER" ] || kill -QUIT "$MASTER" 2>/dev/null || true
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
P="$WORK/nginx"
"$ROOT/scripts/render-conf.sh" bench/peer.conf "$P" PORT="$PORT" PEERDIR="$PEERDIR" PEER="$PEER" >/dev/null
start_nginx() {
  "$NGINX_BIN" -p "$P" -c "$P/nginx.conf" || die "nginx did not start"
  for _ in $(seq 100); do curl -sf -o /dev/null "$BASE/ok" && break; sleep 0.1; done
  MASTER=$(cat "$P/nginx.pid")
}
stop_nginx() {
  kill -QUIT "$MASTER"
  for _ in $(seq 100); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
  MASTER=""
}
start_nginx
get() { curl -sf "$BASE/$1" || die "GET /$1"; }
RES="$WORK/results.tsv"   # measure lib value
: >"$RES"
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RES"; }

# --- 1. tight loops ----------------------------------------------------------------------
for rep in $(seq "$REPS"); do
  put empty - "$(get "loop?lib=ours&what=empty&n=$N")"
  for what in counter observe gauge; do
    for lib in $(rotate "$rep" "${LIBS[@]}"); do put "$what" "$lib" "$(get "loop?lib=$lib&what=$what&n=$N")"; done
  done
done
log "tight loops done"

# --- 2. scrape ---------------------------------------------------------------------------
for lib in "${LIBS[@]}"; do [ "$(get "fill?lib=$lib&routes=$ROUTES")" = "$ROUTES" ] || die "fill $lib"; done
sleep 2   # the peer's counters reach its dict on its 1 s sync timer
for lib in "${LIBS[@]}"; do
  n=$(get "metrics_$lib" | grep -c '^scrape_requests_total{' || true)
  [ "$n" = "$ROUTES" ] || die "the $lib scrape shows $n of $ROUTES routes"
done
for i in $(seq "$SCRAPES"); do
  for lib in $(rotate "$i" "${LIBS[@]}"); do
    out=$(curl -sf -o /dev/null -w '%{time_total} %{size_download}' "$BASE/metrics_$lib") || die "scrape $lib"
    put scrape_s "$lib" "${out% *}"; put scrape_bytes "$lib" "${out#* }"
  done
done
log "scrapes done"

# --- 3. other requests while scraping ----------------------------------------------------
scrape_loop() {  # lib stopfile: scrape once a second until stopfile exists
  local next now; next=$(date +%s%N)
  while [ ! -e "$2" ]; do
    curl -s -o /dev/null -w "scrape_under_load_s\t$1\t%{time_total}\n" --max-time 60 "$BASE/metrics_$1" >>"$RES" || true
    next=$((next + 1000000000)); now=$(date +%s%N)
    [ "$next" -le "$now" ] || sleep "$(awk -v d=$((next - now)) 'BEGIN {printf "%.3f", d / 1e9}')"
  done
}
for rep in $(seq "$REPS"); do
  for v in $(rotate "$rep" none "${LIBS[@]}"); do
    stop="$WORK/stop.$v.$rep"; lp=""
    [ "$v" = none ] || { scrape_loop "$v" "$stop" & lp=$!; }
    out=$(wrk -t1 -c16 -d"${LOAD_SECS}s" --latency -s "$ROOT/bench/latency.lua" "$BASE/ok") || die "wrk ($v)"
    touch "$stop"; [ -z "$lp" ] || wait "$lp"
    line=$(grep '^BENCHLAT' <<<"$out") || die "wrk ($v): $out"
    p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
    put "$([ "$v" = none ] && echo p99_none_ms || echo p99_ms)" "$v" "$(awk -v u="$p99" 'BEGIN {printf "%.2f", u / 1000}')"
  done
done
log "latency under scrapes done"

# --- 4. visible series -------------------------------------------------------------------
# On a fresh nginx (empty zone and dict): with the 10k routes still there the peer's
# scrape takes about a second, long enough for the other worker's sync timer to run
# while it reads, which would hide what this measures.
stop_nginx; start_nginx
# visible LIB BATCH VALUE: VISIBLE series of the batch recorded (inc by 1) in one burst,
# half by each worker (one request on a connection to each), then one scrape at once;
# prints how many of them it shows at VALUE (1: new series; 2: the second pass, an
# update of existing ones), how many workers recorded, and the burst's seconds.
visible() {
  python3 - "$PORT" "$1" "$2" "$VISIBLE" "$3" <<'PY'
import http.client, sys, threading, re, time
port, lib, batch, total, want = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
conns = {}
for _ in range(50):  # reuseport spreads connections over the workers: one to each
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/pid")
    pid = c.getresponse().read()
    conns.setdefault(pid, c)
    if len(conns) == 2:
        break
half = total // len(conns)
def record(k, c):
    c.request("GET", f"/record?lib={lib}&batch={batch}&from={k * half}&n={half}")
    resp = c.getresponse(); resp.read()
    assert resp.status == 200, resp.status
threads = [threading.Thread(target=record, args=(k, c)) for k, c in enumerate(conns.values())]
t0 = time.monotonic()
for t in threads: t.start()
for t in threads: t.join()
burst = time.monotonic() - t0
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", f"/metrics_{lib}")
body = c.getresponse().read().decode()
print(len(re.findall(rf'^visible_total{{batch="{batch}",id="\d+"}} {want}$', body, re.M)), len(conns), f"{burst:.3f}")
PY
}
for rep in $(seq "$REPS"); do
  for lib in $(rotate "$rep" "${LIBS[@]}"); do
    for pass in 1 2; do
      read -r seen workers burst <<<"$(visible "$lib" "b$rep" "$pass")" || die "visible $lib"
      [ "$workers" = 2 ] || die "repetition $rep reached $workers worker(s) only"
      put "visible$pass" "$lib" "$seen"; put "burst$pass" "$lib" "$burst"
      [ "$lib" = peer ] || [ "$seen" = "$VISIBLE" ] || die "ours showed $seen of $VISIBLE just-recorded series"
      sleep 2   # the peer's sync: the second pass starts from every value in its dict
    done
  done
done
stop_nginx
clean_log "$P"

# --- report ------------------------------------------------------------------------------
vals() { awk -F'\t' -v m="$1" -v l="$2" '$1 == m && $2 == l {print $3}' "$RES"; }
stat() {  # "median (min–max)", scaled by $3 (default 1), $4 decimals
  local v; v=$(vals "$1" "$2" | awk -v s="${3:-1}" -v f="%.${4:-1}f\n" '{printf f, $1 * s}')
  [ -n "$v" ] || { echo "—"; return; }
  printf '%s (%s–%s)' "$(median <<<"$v")" "$(sort -g <<<"$v" | head -1)" "$(sort -g <<<"$v" | tail -1)"
}
med() { vals "$1" "$2" | median; }
ratio() {  # peer ÷ ours of the medians: how many times ours is cheaper
  local o p; o=$(med "$1" ours); p=$(med "$1" peer)
  [ -n "$o" ] && [ -n "$p" ] && awk -v o="$o" -v p="$p" 'BEGIN {printf "%.1f×", p / o}' || echo "—"
}
row() {  # row TEXT MEASURE [SCALE DECIMALS]
  echo "| $1 | $(stat "$2" ours "${3:-1}" "${4:-1}") | $(stat "$2" peer "${3:-1}" "${4:-1}") | $(ratio "$2") |"
}
for m in counter observe gauge scrape_s scrape_bytes p99_ms scrape_under_load_s visible1 visible2 burst1 burst2; do
  for lib in "${LIBS[@]}"; do put_value "$m.$lib" "$(med "$m" "$lib")"; done
done
put_value p99_none_ms "$(med p99_none_ms none)"
echo "### Side by side with nginx-lua-prometheus, in the same nginx"
echo
echo "\`bench/peer.sh\` ($([ "$SMOKE" = 1 ] && echo "smoke run" || echo "full run"); $(env_get DESCRIPTION); peer: $([ "$PEER" = true ] && echo "nginx-lua-prometheus at commit ${PEER_REV:-?}, loaded from \`../shared/peers/nginx-lua-prometheus\`" || echo "absent, its column is empty")). Both libraries record the same families through the same Lua calls (\`bench/peer_bench.lua\`), 2 workers; median (min–max) of $REPS repetitions unless said."
echo
echo "| measurement | ours | peer | peer ÷ ours |"
echo "|---|---|---|---|"
row "counter \`inc(1, {a, b, c})\`, ns per call (tight loop, one worker)" counter
row "histogram \`observe(v, {route})\` (11 buckets), ns per call" observe
row "gauge \`set(v, {route})\`, ns per call" gauge
row "scrape of $ROUTES routes (counter + histogram each), ms ($SCRAPES scrapes)" scrape_s 1000 1
row "its size, MB" scrape_bytes 0.000001 2
row "p99 of other requests while that library's $ROUTES routes are scraped every second, ms" p99_ms 1 2
row "its scrapes meanwhile, s" scrape_under_load_s 1 3
shown() { awk -v o="$(med "$1" ours)" -v p="$(med "$1" peer)" 'BEGIN {if (o > 0 && p != "") printf "the peer shows %.0f %% of them", 100 * p / o; else print "—"}'; }
echo "| of $VISIBLE new series just recorded (half by each worker), a scrape shows | $(stat visible1 ours 1 0) | $(stat visible1 peer 1 0) | $(shown visible1) |"
echo "| of $VISIBLE existing series just incremented (half by each worker), a scrape shows the new value of | $(stat visible2 ours 1 0) | $(stat visible2 peer 1 0) | $(shown visible2) |"
echo
echo "- Tight loops: $N iterations after $((N / 10)) of warm-up; the loop alone (label lookup in an 8-entry array) costs $(stat empty - 1 2) ns per iteration, included in both columns. The label values vary (8 routes), so the label lookup is paid per call as on a request path."
echo "- The peer's \`inc\` and \`observe\` add to a table in the worker (its dict is updated on a 1 s timer), so a scrape shows what other workers recorded since their last sync only after their next one: the last two rows. Ours writes to the shared zone in the call. The bursts took $(stat burst1 ours 1 3) s (ours) and $(stat burst1 peer 1 3) s (peer) for the new series, $(stat burst2 ours 1 3) and $(stat burst2 peer 1 3) s for the increments: a burst longer than the sync interval gives the peer's timer time to run in it. Gauges are written to the peer's dict at once."
echo "- Scrape: ours from the module's \`prometheus_metrics\` (rendered in nginx's thread pool), the peer's from \`collect()\` in a content handler (in the worker's event loop: the worker answers nothing else meanwhile)."
echo "- Latency: \`wrk -t1 -c16 -d${LOAD_SECS}s --latency\` on a \`return 200\` location while a loop starts \`curl\` once a second on one library's endpoint; with nothing scraped the p99 is $(stat p99_none_ms none 1 2) ms. 2 workers, wrk, curl and the render thread share 2 cores."
