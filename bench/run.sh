#!/usr/bin/env bash
# ngx-prometheus benchmarks, each side by side with a baseline measured in the same run.
#
#   ./bench/run.sh                  full run (a few minutes); refreshes BENCHMARKS.md
#   BENCH_SMOKE=1 ./bench/run.sh    tiny sizes, well under a minute; checks that every
#                                   part runs (exits non-zero if one fails) but never
#                                   judges timings; BENCHMARKS.md is left alone
#
# Starts its own nginx (2 workers, free 19xxx ports, a temporary prefix) from
# bench/bench.conf with the Lua in bench/bench.lua, and stops it on exit.
#
# 1. Hot path: ns per counter increment / histogram observation, timed in-process with
#    clock_gettime(CLOCK_MONOTONIC) over N iterations minus an empty loop, in both
#    workers at once (a barrier in the server starts them together).
# 2. Log helper: ngxprom.log's logger:log() (request read natively) vs the same
#    recording through ngx.var, in a content phase (both workers) and in the log phase
#    of a proxied request (one worker, upstream state present).
# 3. Scrape: 10k histogram routes + 10k counters, the module's prometheus_metrics
#    vs a Lua get_keys/sort/concat renderer over a lua_shared_dict.
# 4. End to end (bench/e2e.sh): wrk through the gateway with the prometheus plugin on
#    (every switch) vs off vs nginx without Lua; requests/s, latency, worker CPU/request.
# Cases alternate within each repetition; medians (and min-max) over all samples.
#
# Overrides (optional): BENCH_N, BENCH_LOG_N, BENCH_REPS, BENCH_SERIES, BENCH_SCRAPES,
# BENCH_KEEP=1 (keep the temporary prefix).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "${BENCH_SMOKE:-0}" in 0 | "" | no | false) SMOKE=0 ;; *) SMOKE=1 ;; esac

if [ "$SMOKE" = 1 ]; then
  N=${BENCH_N:-20000}; LOG_N=${BENCH_LOG_N:-5000}; REPS=${BENCH_REPS:-2}
  SERIES=${BENCH_SERIES:-200}; SCRAPES=${BENCH_SCRAPES:-2}
else
  N=${BENCH_N:-10000000}; LOG_N=${BENCH_LOG_N:-1000000}; REPS=${BENCH_REPS:-7}
  SERIES=${BENCH_SERIES:-10000}; SCRAPES=${BENCH_SCRAPES:-5}
fi
# A default-bucket histogram series takes ~20.5 KB of zone (HDR counts), a counter ~100 B.
SCRAPE_ZONE_MB=$(( (SERIES * 22 / 1024) + 16 ))

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for c in nginx curl awk sort shuf; do command -v "$c" >/dev/null || die "$c is not installed"; done
MODULE="$ROOT/target/release/libngx_prometheus.so"
[ -f "$MODULE" ] || die "$MODULE is missing: run 'make build' first"
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || die "libnginx-mod-http-lua is not installed"

# LuaJIT's jit/v.lua (libluajit2-5.1-common); without it, aborts are not checked.
JITDIR=""
for f in /usr/share/luajit*/jit/v.lua /usr/local/share/luajit*/jit/v.lua; do
  [ -f "$f" ] && { JITDIR=$(dirname "$(dirname "$f")"); break; }
done

# --- nginx lifecycle ------------------------------------------------------------------
PREFIX=$(mktemp -d "${TMPDIR:-/tmp}/ngxprom-bench.XXXXXX")
chmod 755 "$PREFIX"
WORK="$PREFIX/work"   # client-side files
mkdir -p "$WORK"
MASTER=""

cleanup() {
  local rc=$?
  set +e
  # Background curls of this script, by id.
  local j
  for j in $(jobs -p); do kill "$j" 2>/dev/null; done
  if [ -n "$MASTER" ] && kill -0 "$MASTER" 2>/dev/null; then
    local workers i
    workers=$(pgrep -P "$MASTER")
    kill -QUIT "$MASTER" 2>/dev/null
    for i in $(seq 50); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$MASTER" 2>/dev/null; then
      kill -KILL "$MASTER" 2>/dev/null
    fi
    for j in $workers; do kill -0 "$j" 2>/dev/null && kill -KILL "$j" 2>/dev/null; done
  fi
  if [ "$rc" != 0 ] && [ -f "$PREFIX/logs/error.log" ]; then
    log "last lines of the nginx error log:"
    tail -n 20 "$PREFIX/logs/error.log" >&2
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $PREFIX"; else rm -rf "$PREFIX"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {
  if command -v ss >/dev/null; then
    [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
pick_port() {
  local p
  for p in $(shuf -i 19000-19899 -n 100); do
    [ "$p" != "${1:-}" ] && port_free "$p" && { echo "$p"; return 0; }
  done
  return 1
}
PORT=$(pick_port) || die "no free port in 19000-19899"
UPORT=$(pick_port "$PORT") || die "no second free port"
BASE="http://127.0.0.1:$PORT"

"$ROOT/scripts/render-conf.sh" bench/bench.conf "$PREFIX" WORKERS=2 PORT="$PORT" UPORT="$UPORT" \
  JITDIR="${JITDIR:-$ROOT/bench}" SCRAPE_ZONE="${SCRAPE_ZONE_MB}m" >/dev/null
# jit.v files are written by the workers (nobody when started as root).
mkdir -p "$PREFIX/jit"
if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$PREFIX/jit"; fi
chmod 755 "$PREFIX/jit"

nginx -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/logs/error.log" || die "nginx -t"
nginx -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/logs/error.log" || die "nginx did not start"
for _ in $(seq 100); do [ -s "$PREFIX/nginx.pid" ] && break; sleep 0.05; done
MASTER=$(cat "$PREFIX/nginx.pid" 2>/dev/null) || die "no pid file"
INFO=""
for _ in $(seq 100); do INFO=$(curl -sf "$BASE/info" 2>/dev/null) && break; sleep 0.05; done
[ -n "$INFO" ] || die "nginx does not answer on $BASE"
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
LUAJIT_VERSION=$(kv luajit "$INFO" | tr _ ' ')
JITV=$(kv jitv "$INFO")
log "nginx master $MASTER on :$PORT (upstream :$UPORT), prefix $PREFIX, $( [ "$SMOKE" = 1 ] && echo smoke || echo full) mode"
log "N=$N log_N=$LOG_N reps=$REPS series=$SERIES scrapes=$SCRAPES"

RESULTS="$WORK/samples.tsv"   # part case rep pid net_ns loop_ns empty_ns
: >"$RESULTS"

# --- 1 & 2: pairs of concurrent requests ----------------------------------------------
# One request of a pair; retried on 409 (both landed on one worker).
hot_one() {
  local url=$1 out=$2 code i
  for i in $(seq 500); do
    code=$(curl -s -o "$out" -w '%{http_code}' --max-time 900 "$url") || code=000
    [ "$code" = 200 ] && return 0
    [ "$code" = 409 ] || { log "$url -> HTTP $code $(head -c 300 "$out" 2>/dev/null | tr -s "\n" " ")"; return 1; }
  done
  log "$url: never reached the second worker"; return 1
}

ROUND=0
pair() {  # part case n rep
  local part=$1 case=$2 n=$3 rep=$4 a b pa pb line
  ROUND=$((ROUND + 1))
  a="$WORK/r$ROUND.a"; b="$WORK/r$ROUND.b"
  hot_one "$BASE/hot?case=$case&n=$n&round=$ROUND" "$a" & pa=$!
  hot_one "$BASE/hot?case=$case&n=$n&round=$ROUND" "$b" & pb=$!
  wait "$pa" || die "$case (round $ROUND)"
  wait "$pb" || die "$case (round $ROUND)"
  [ "$(kv pid "$(cat "$a")")" != "$(kv pid "$(cat "$b")")" ] || die "$case (round $ROUND): both ran in one worker"
  for line in "$(cat "$a")" "$(cat "$b")"; do
    record "$part" "$case" "$rep" "$line"
  done
}

# One worker alone, the other idle: the same cases without contention.
solo() {  # case n rep
  local case=$1 n=$2 rep=$3 a
  ROUND=$((ROUND + 1))
  a="$WORK/r$ROUND.a"
  hot_one "$BASE/hot?case=$case&n=$n&round=$ROUND&solo=1" "$a" || die "$case (round $ROUND)"
  record solo "$case" "$rep" "$(cat "$a")"
}

# The shared-dict stand-ins cost ~10-100x more per call: a tenth of the iterations
# keeps their loops (and the whole run) within a few seconds each.
N_SLOW=$(( N / 10 > 1000 ? N / 10 : (N < 1000 ? N : 1000) ))
n_for() { case $1 in dict_incr | standin_observe) echo "$N_SLOW" ;; *) echo "$N" ;; esac; }

record() {  # part case rep line
  local line=$4
  [[ "$line" == pid=* ]] || die "$2: unexpected answer: $line"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(kv pid "$line")" \
    "$(kv net_ns "$line")" "$(kv loop_ns "$line")" "$(kv empty_ns "$line")" >>"$RESULTS"
  local jv; jv=$(kv jitv "$line"); [[ "$jv" == error:* ]] && die "jit.v: $jv"
  return 0
}

# Log phase of a proxied request: one worker; the result is fetched afterwards.
LP=0
logphase() {  # case n rep
  local case=$1 n=$2 rep=$3 code line
  LP=$((LP + 1))
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$BASE/lp?case=$case&n=$n&id=$LP") || code=000
  [ "$code" = 200 ] || die "log phase request $case -> HTTP $code"
  for _ in $(seq 6000); do
    line=$(curl -sf --max-time 900 "$BASE/result?id=$LP" 2>/dev/null) && break
    sleep 0.05
  done
  [[ "${line:-}" == pid=* ]] || die "log phase $case: ${line:-no result}"
  record logphase "$case" "$rep" "$line"
}

HOT_CASES=(ours_inc dict_incr ours_labels_inc ffi_inc ours_observe standin_observe)
SOLO_CASES=("${HOT_CASES[@]}")
LOG_CASES=(log_native log_var)
rotate() {  # rep items... -> items rotated by rep
  local k=$1 i; shift; local a=("$@") n=$#
  for ((i = 0; i < n; i++)); do echo "${a[$(((i + k) % n))]}"; done
}

T0=$SECONDS
for rep in $(seq "$REPS"); do
  for c in $(rotate "$rep" "${HOT_CASES[@]}"); do pair hot "$c" "$(n_for "$c")" "$rep"; done
  for c in $(rotate "$rep" "${SOLO_CASES[@]}"); do solo "$c" "$(n_for "$c")" "$rep"; done
  for c in $(rotate "$rep" "${LOG_CASES[@]}"); do pair log "$c" "$LOG_N" "$rep"; done
  for c in $(rotate "$rep" "${LOG_CASES[@]}"); do logphase "$c" "$LOG_N" "$rep"; done
  log "repetition $rep/$REPS of the hot path and log helper done ($((SECONDS - T0)) s)"
done
PIDS=$(awk -F'\t' '$1=="hot" || $1=="log" {print $4}' "$RESULTS" | sort -u | tr '\n' ' ')
NPIDS=$(wc -w <<<"$PIDS")
[ "$NPIDS" = 2 ] || die "expected the pairs to run on 2 worker pids, saw: $PIDS"

# --- 3: scrape ------------------------------------------------------------------------
T1=$SECONDS
CHUNK=2000
SETUP_OURS=0; SETUP_DICT=0; SETUP=""
for ((from = 1; from <= SERIES; from += CHUNK)); do
  to=$((from + CHUNK - 1)); [ "$to" -le "$SERIES" ] || to=$SERIES
  SETUP=$(curl -sf --max-time 900 "$BASE/setup_scrape?from=$from&to=$to") || die "scrape setup $from..$to"
  SETUP_OURS=$(awk -v a="$SETUP_OURS" -v b="$(kv ours_s "$SETUP")" 'BEGIN{print a+b}')
  SETUP_DICT=$(awk -v a="$SETUP_DICT" -v b="$(kv dict_s "$SETUP")" 'BEGIN{print a+b}')
done
[ "$(kv dict_failed "$SETUP")" = 0 ] || die "the stand-in dict is full: $SETUP"
[ "$(kv errors_zone_full "$SETUP")" = 0 ] || die "the scrape zone is full: $SETUP"
ZONE_USED=$(kv zone_used "$SETUP"); ZONE_SERIES=$(kv series "$SETUP"); DICT_USED=$(kv dict_used "$SETUP")
log "scrape setup: $SERIES routes in $((SECONDS - T1)) s (zone: $ZONE_SERIES series, $((ZONE_USED / 1048576)) MiB used)"

# One untimed fetch of each, checked.
curl -sf -o "$WORK/ours.txt" "$BASE/metrics" || die "GET /metrics"
curl -sf -o "$WORK/knyar.txt" "$BASE/knyar_metrics" || die "GET /knyar_metrics"
for f in ours knyar; do
  grep -q "^bench_route_latency_seconds_count{route=\"/r/$SERIES\"} 3\$" "$WORK/$f.txt" ||
    die "$f exposition lacks the last route's histogram"
  grep -q "^bench_route_requests_total{route=\"/r/$SERIES\"} " "$WORK/$f.txt" ||
    die "$f exposition lacks the last route's counter"
done
OURS_LINES=$(grep -vc '^#' "$WORK/ours.txt"); KNYAR_LINES=$(grep -vc '^#' "$WORK/knyar.txt")

SCRAPES_TSV="$WORK/scrapes.tsv"   # side rep seconds bytes
: >"$SCRAPES_TSV"
scrape() {  # side url rep
  local r
  r=$(curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}' --max-time 300 "$2") ||
    die "scrape $1"
  [ "${r%% *}" = 200 ] || die "scrape $1: HTTP ${r%% *}"
  printf '%s\t%s\t%s\n' "$1" "$3" "$(cut -d' ' -f2- <<<"$r" | tr ' ' '\t')" >>"$SCRAPES_TSV"
}
for rep in $(seq "$SCRAPES"); do
  if ((rep % 2)); then
    scrape ours "$BASE/metrics" "$rep"; scrape standin "$BASE/knyar_metrics" "$rep"
  else
    scrape standin "$BASE/knyar_metrics" "$rep"; scrape ours "$BASE/metrics" "$rep"
  fi
done
log "scrapes done ($((SECONDS - T1)) s)"

# --- jit.v ------------------------------------------------------------------------------
# Every traced request wrote PREFIX/jit/<case>-<round>-<pid>.log (lp-<case>-... for the
# log phase); "[TRACE --- ...]" lines are aborts.
JIT_DETAIL=""; JIT_LOG_NATIVE=""
if [ "$JITV" = yes ]; then
  ABORTS_TSV="$WORK/aborts.tsv"   # case reason
  for f in "$PREFIX"/jit/*.log; do
    [ -e "$f" ] || continue
    c=$(basename "$f"); c=${c#lp-}; c=${c%%-*}
    { grep 'TRACE ---' "$f" || true; } | sed -E 's/^\[TRACE --- (\([0-9]+\/[0-9a-z]+\) )?//; s/\]$//' |
      sed "s|$ROOT/||g" | awk -v c="$c" '{print c "\t" $0}'
  done >"$ABORTS_TSV"
  JIT_FILES=$(find "$PREFIX/jit" -name '*.log' | wc -l)
  count_aborts() { awk -F'\t' -v re="$1" '$1 ~ re' "$ABORTS_TSV" | wc -l; }
  count_nyi() { awk -F'\t' -v re="$1" '$1 ~ re && /NYI/' "$ABORTS_TSV" | wc -l; }
  A_HOT=$(count_aborts '^(ours_inc|ours_labels_inc|ffi_inc|ours_observe)$')
  N_HOT=$(count_nyi '^(ours_inc|ours_labels_inc|ffi_inc|ours_observe)$')
  A_LOG=$(count_aborts '^log_native$'); N_LOG=$(count_nyi '^log_native$')
  A_BASE=$(count_aborts '^(dict_incr|standin_observe|log_var)$'); N_BASE=$(count_nyi '^(dict_incr|standin_observe|log_var)$')
  JIT_LINE="jit.v ($JITDIR/jit/v.lua, $JIT_FILES traced requests): ngx-prometheus counter/histogram loops: $A_HOT trace aborts ($N_HOT NYI); log helper (logger:log): $A_LOG aborts ($N_LOG NYI); baselines (shared dict, ngx.var): $A_BASE aborts ($N_BASE NYI)."
  if [ -s "$ABORTS_TSV" ]; then
    JIT_DETAIL=$(awk -F'\t' '{print $1 ": " $2}' "$ABORTS_TSV" | sort | uniq -c | sort -rn | awk 'NR <= 15')
  fi
  JIT_LOG_NATIVE=$(awk -F'\t' '$1 == "log_native" && /NYI/ {sub(/^.* -- /, "", $2); print $2}' "$ABORTS_TSV" |
    sort | uniq -c | sort -rn | awk 'NR == 1 {sub(/^ *[0-9]+ /, ""); print}')
else
  JIT_LINE="jit.v: not available (LuaJIT's jit/v.lua not found under /usr/share/luajit*; it ships with libluajit2-5.1-common): trace aborts were not checked."
fi

# --- report -----------------------------------------------------------------------------
# stats FIELD AWK-ARGS... -> "median min max count" of column FIELD of the selected rows
stats() {
  local field=$1; shift
  awk -F'\t' -v f="$field" "$@" | sort -g | awk '
    { a[NR] = $1 }
    END {
      if (NR == 0) { print "nan nan nan 0"; exit }
      m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
      print m, a[1], a[NR], NR
    }'
}
sample() {  # part case -> stats of net_ns
  stats 5 -v p="$1" -v c="$2" '$1==p && $2==c {print $f}' "$RESULTS"
}
scrape_stats() {  # side field(3=time 4=bytes)
  stats "$2" -v s="$1" '$1==s {print $f}' "$SCRAPES_TSV"
}
fmt_ns() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN{printf "%.1f ns (%.1f–%.1f)", m, lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b <= 0) print "n/a"; else printf "%.1f×", a / b }'; }

declare -A MED LO HI CNT
for key in hot:ours_inc hot:ours_labels_inc hot:ffi_inc hot:dict_incr hot:ours_observe hot:standin_observe \
           solo:ours_inc solo:ours_labels_inc solo:ffi_inc solo:dict_incr solo:ours_observe solo:standin_observe \
           log:log_native log:log_var logphase:log_native logphase:log_var; do
  read -r MED[$key] LO[$key] HI[$key] CNT[$key] < <(sample "${key%%:*}" "${key#*:}")
  [ "${CNT[$key]}" -gt 0 ] || die "no samples for $key"
done
read -r S_OURS S_OURS_LO S_OURS_HI S_N < <(scrape_stats ours 3)
read -r S_KNY S_KNY_LO S_KNY_HI _ < <(scrape_stats standin 3)
read -r B_OURS _ _ _ < <(scrape_stats ours 4)
read -r B_KNY _ _ _ < <(scrape_stats standin 4)
secs() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN{printf "%.3f s (%.3f–%.3f)", m, lo, hi}'; }
mb() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.1f MB, %.0f MB/s", b / 1e6, (t > 0 ? b / 1e6 / t : 0)}'; }

cell() { fmt_ns "${MED[$1]}" "${LO[$1]}" "${HI[$1]}"; }
row() {  # label key-ours key-base baseline-label
  local base="" r=""
  [ -z "$3" ] || { base="$(cell "$3")${4:+ $4}"; r=$(ratio "${MED[$3]}" "${MED[$2]}"); }
  echo "| $1 | $(cell "$2") | $base | $r |"
}
TABLE=$(
  echo "| Measurement (per call) | ngx-prometheus | Baseline (stand-in, same run) | Baseline ÷ ours |"
  echo "|---|---|---|---|"
  row "Counter inc, \`child:inc()\` (child resolved once), 2 workers at once" hot:ours_inc hot:dict_incr "\`dict:incr(key, 1, 0)\`"
  row "… same, 1 worker alone" solo:ours_inc solo:dict_incr ""
  row "Counter inc, \`family:labels(a, b):inc()\`, 2 workers at once" hot:ours_labels_inc hot:dict_incr "\`dict:incr(key, 1, 0)\`"
  row "… same, 1 worker alone" solo:ours_labels_inc solo:dict_incr ""
  row "Histogram \`child:observe(v)\`, 2 workers at once" hot:ours_observe hot:standin_observe "15-bound linear search + 3 \`incr\`"
  row "… same, 1 worker alone" solo:ours_observe solo:standin_observe ""
  row "(floor) bare FFI \`ngx_prom_counter_add(handle, 1)\`, 2 workers at once" hot:ffi_inc "" ""
  row "… same, 1 worker alone" solo:ffi_inc "" ""
  row "Log helper, content phase (no upstream), 2 workers at once" log:log_native log:log_var "5× \`ngx.var\` + FFI record calls"
  row "Log helper, log phase of a proxied request, 1 worker" logphase:log_native logphase:log_var "5× \`ngx.var\` + FFI record calls"
  echo "| Scrape, $SERIES histogram routes + $SERIES counters | $(secs "$S_OURS" "$S_OURS_LO" "$S_OURS_HI"); $(mb "$B_OURS" "$S_OURS") | $(secs "$S_KNY" "$S_KNY_LO" "$S_KNY_HI"); $(mb "$B_KNY" "$S_KNY") (\`get_keys\` + sort + concat in Lua) | $(ratio "$S_KNY" "$S_OURS") |"
)
NOTES=$(
  echo "- Hot path: ns per call, median (min–max) of $((REPS * 2)) samples ($REPS repetitions × 2 workers running at the same time; worker pids ${PIDS% }), or of $REPS samples for the \"1 worker alone\" rows (the other worker idle); N=$N iterations per loop ($N_SLOW for the shared-dict stand-ins), empty-loop cost subtracted (empty loop: median $(stats 7 -v p=hot -v c=ours_inc '$1==p && $2==c {print $f}' "$RESULTS" | awk '{printf "%.2f", $1}') ns/iteration). Both workers update the same series / the same dict keys."
  echo "- Log helper: N=$LOG_N calls per loop; content phase in both workers at once ($((REPS * 2)) samples), log phase in one worker ($REPS samples)."
  echo "- Scrape: median (min–max) of $S_N scrapes each, alternating, curl \`time_total\`; exposition lines without comments: ours $OURS_LINES, stand-in $KNYAR_LINES. Zone: $ZONE_SERIES series in $((ZONE_USED / 1048576)) MiB. Setup (series creation, not part of the scrape): ours $(awk -v s="$SETUP_OURS" 'BEGIN{printf "%.2f", s}') s, stand-in dict $(awk -v s="$SETUP_DICT" 'BEGIN{printf "%.2f", s}') s."
  echo "- $JIT_LINE"
  [ -z "$JIT_DETAIL" ] || sed -E 's/^ *([0-9]+) /    - \1× /' <<<"$JIT_DETAIL"
)

echo
echo "## ngx-prometheus benchmarks $( [ "$SMOKE" = 1 ] && echo '(smoke: tiny sizes, timings meaningless)')"
echo
echo "$TABLE"
echo
echo "$NOTES"
echo

# 4. End to end through the gateway (bench/e2e.sh): plugin on / off / nginx without Lua.
E2E=$("$ROOT/bench/e2e.sh") || { log "end-to-end benchmark failed"; exit 1; }
echo "$E2E"
echo

[ "$SMOKE" = 1 ] && { log "smoke run OK ($SECONDS s)"; exit 0; }

# --- BENCHMARKS.md (full mode only) -------------------------------------------------------
CPU=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
NGINX_V=$(nginx -v 2>&1 | sed 's|.*nginx/||')
NGX_LUA_V=$(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo "?")
COMMENTARY=$(awk \
  -v inc="${MED[hot:ours_inc]}" -v linc="${MED[hot:ours_labels_inc]}" -v ffi="${MED[hot:ffi_inc]}" \
  -v dict="${MED[hot:dict_incr]}" -v obs="${MED[hot:ours_observe]}" -v sobs="${MED[hot:standin_observe]}" \
  -v sinc="${MED[solo:ours_inc]}" -v sdict="${MED[solo:dict_incr]}" -v sffi="${MED[solo:ffi_inc]}" \
  -v slinc="${MED[solo:ours_labels_inc]}" \
  -v sobs1="${MED[solo:ours_observe]}" -v ssobs="${MED[solo:standin_observe]}" \
  -v ln="${MED[log:log_native]}" -v lv="${MED[log:log_var]}" \
  -v pn="${MED[logphase:log_native]}" -v pv="${MED[logphase:log_var]}" \
  -v so="$S_OURS" -v sk="$S_KNY" -v bo="$B_OURS" -v bk="$B_KNY" -v series="$SERIES" \
  -v zone="$ZONE_USED" -v dused="$DICT_USED" -v jitlog="$JIT_LOG_NATIVE" -v ahot="${A_HOT:-?}" -v nhot="${N_HOT:-?}" '
  function wrapper(a, b) {
    if (a - b < 1) return sprintf("costs nothing measurable over the bare FFI call (%.1f against %.1f ns)", a, b)
    return sprintf("adds %.1f ns over the bare FFI call", a - b)
  }
  function vs(a, b) {  # how a compares with b, in words
    if (a <= 0 || b <= 0) return "n/a"
    if (a <= b) return sprintf("%.1f× less", b / a)
    return sprintf("%.1f× more", a / b)
  }
  BEGIN {
  printf "- **Counter increments**: %.1f ns with a resolved child and %.1f ns through the cached `labels()` lookup when both workers update the same series at once; %.1f and %.1f ns in one worker alone. The difference is the cache line of the shared counter bouncing between the two cores (the bare FFI call shows the same: %.1f ns at once, %.1f ns alone). Alone, the Lua wrapper (`Counter:inc`, `Family:labels`) %s. The shared-dict stand-in pays %.1f ns per `incr` at once (%.1f ns alone), i.e. ours costs %s. That stand-in is a pessimistic model of nginx-lua-prometheus: the real `counter:inc` buffers increments in a per-worker Lua table and syncs them to the dict every second (ANCHORS.md, measured separately, not in this run: about 41–47 ns per call, with values lagging by up to the sync interval); against 45 ns, ours costs %s alone and %s with both workers on one series, with no lag.\n", inc, linc, sinc, slinc, ffi, sffi, wrapper(sinc, sffi), dict, sdict, vs(inc, dict), vs(sinc, 45), vs(inc, 45)
  printf "- **Histogram observations**: %.1f ns (%.1f ns alone) against %.1f ns (%.1f ns alone) for the stand-in (linear search + 3 dict `incr`), i.e. %s; ANCHORS.md (not this run) has the real library at about 96–138 ns per `observe`: against 117 ns ours costs %s alone and %s at once.\n", obs, sobs1, sobs, ssobs, vs(obs, sobs), vs(sobs1, 117), vs(obs, 117)
  printf "- **Log helper**: `logger:log()` (request read natively, one FFI call to record) costs %.0f ns per call against %.0f ns for the `ngx.var` equivalent in a content phase (native: %s), and %.0f ns against %.0f ns in the log phase of a proxied request, where `$upstream_response_time` is set (native: %s).", ln, lv, vs(ln, lv), pn, pv, vs(pn, pv)
  if (jitlog != "") {
    printf " These native numbers are mostly LuaJIT interpreter time: jit.v shows the traces through the helper aborting (`%s`), so `logger:log()` never stays compiled, unlike the counter and histogram paths (%s aborts, %s of them NYI; see the list above).", jitlog, ahot, nhot
    if (jitlog ~ /bytecode 50 at .*log\.lua/) printf " Bytecode 50 is UCLO (close upvalues): `Logger:_entry` in lua/ngxprom/log.lua creates a closure (`handle`) in the same function as its cached fast path, and LuaJIT cannot trace through that."
  }
  printf "\n"
  printf "- **Scrape** of %d histogram routes + %d counters: %.3f s for %.1f MB from the module against %.3f s for %.1f MB from the Lua stand-in, i.e. the module takes %s time. ANCHORS.md measured the real library at 0.74–1.8 s for 10,000 routes (21-bucket histograms, 14.6 MB); the stand-in skips that library'"'"'s bucket-label fix-ups, HELP/TYPE lines and per-worker sync, so it flatters the baseline rather than ours.\n", series, series, so, bo / 1e6, sk, bk / 1e6, vs(so, sk)
  printf "- **Memory**: a histogram series with the default range (1 µs..60 s, 2 significant digits) keeps 2,560 HDR count words, about 20.5 KB of zone; the %d routes took %.0f MiB of zone", series, zone / 1048576
  if (dused > 0) printf " where the stand-in dict holds the same values in about %.0f MiB", dused / 1048576
  printf ". Every scrape reads all of those words.\n"
}')
{
  echo "# Benchmarks"
  echo
  echo "Generated by \`./bench/run.sh\` (\`make bench\`); rerun it to refresh this file. The baselines are"
  echo "**stand-ins written for this benchmark** (bench/bench.lua), not nginx-lua-prometheus itself: they"
  echo "do what that library does at its core (a \`lua_shared_dict\` \`incr\` per update; a linear bucket"
  echo "search then bucket/sum/count \`incr\`; \`get_keys\` + \`table.sort\` + concatenation to render)."
  echo "Numbers for the real library, from /work/shared/ANCHORS.md, are quoted for orientation only."
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Command: \`./bench/run.sh\` (full mode; \`BENCH_SMOKE=1 ./bench/run.sh\` is the CI smoke run)"
  echo "- Machine: $(nproc) CPUs, $CPU, Linux $(uname -r), $(awk '/MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "- Software: nginx $NGINX_V, lua-nginx-module $NGX_LUA_V, $LUAJIT_VERSION; 2 worker processes"
  echo "- Run time: $SECONDS s"
  echo
  echo "$TABLE"
  echo
  echo "$E2E"
  echo
  echo "## How it was measured"
  echo
  echo "$NOTES"
  echo "- Timing: \`clock_gettime(CLOCK_MONOTONIC)\` through the FFI around a loop of N calls inside \`content_by_lua\` (or \`log_by_lua\`), minus the same loop with an empty body, timed just before and just after it (the lower of the two; the observe loops' \"empty\" loop computes the observed value too). A barrier in a shared dict starts both workers' loops within about a millisecond of each other. Cases rotate order in each repetition."
  echo "- The machine is shared and noisy: read the ratios, which come from interleaved measurements in the same run, rather than the absolute values."
  echo
  echo "## Commentary"
  echo
  echo "$COMMENTARY"
  echo
  echo "<details><summary>Raw samples</summary>"
  echo
  echo '```'
  echo "# part case rep pid net_ns loop_ns empty_ns"
  cat "$RESULTS"
  echo "# scrape side rep seconds bytes"
  cat "$SCRAPES_TSV"
  echo '```'
  echo
  echo "</details>"
} >"$ROOT/BENCHMARKS.md"
log "wrote BENCHMARKS.md ($SECONDS s)"
