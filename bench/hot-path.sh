#!/usr/bin/env bash
# Hot path and log helper, in the benchmark server (bench/bench.conf, bench/bench.lua):
#   ns per counter increment / gauge set / histogram observation, timed in-process with
#   clock_gettime(CLOCK_MONOTONIC) over N iterations minus an empty loop, in both workers
#   at once (a barrier in the server starts them together) and in one worker alone;
#   1 vs 3 labels; both workers on the same series vs on different series (neighbours in
#   the zone, and far apart); beside shared-dict stand-ins. ngxprom.log's logger:log()
#   (request read natively) vs the same recording through ngx.var, in a content phase
#   (both workers) and in the log phase of a proxied request (one worker). jit.v trace
#   aborts of every traced loop. Cases alternate within each repetition; medians (and
#   min-max) over all samples.
#
#   bench/hot-path.sh                  a step of bench/run.sh, or alone (its own server)
#   BENCH_SMOKE=1 bench/hot-path.sh    tiny sizes
#
# Prints the stand-in table; fragments (OUT/hot.*.md, bench/common.sh step_init): notes,
# variants (the 1/3-label, same/different-series section), commentary, raw; numbers in
# OUT/hot.tsv. Overrides: BENCH_N, BENCH_LOG_N, BENCH_REPS (bench/bench-nginx.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
# shellcheck source=bench/bench-nginx.sh
. "$ROOT/bench/bench-nginx.sh"
step_init hot
bench_server_up
log "N=$N log_N=$LOG_N reps=$REPS"

RESULTS="$WORK/samples.tsv"   # part case rep pid net_ns loop_ns empty_ns
: >"$RESULTS"

# --- pairs of concurrent requests, one worker alone, the log phase --------------------
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

HOT_CASES=(ours_inc dict_incr ours_labels_inc ffi_inc ours_observe standin_observe
  c1_same c1_diff c3_same c3_diff g1_same g1_diff g3_same g3_diff h1_same h1_diff h3_same h3_diff c1_apart)
SOLO_CASES=(ours_inc dict_incr ours_labels_inc ffi_inc ours_observe standin_observe
  c1_same c3_same g1_same g3_same h1_same h3_same)
LOG_CASES=(log_native log_var)

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

# --- where the "different series" of the variants sit ---------------------------------
declare -A APART
LAYOUT=$(curl -sf "$BASE/series_layout") || die "GET /series_layout"
while read -r k v; do APART[$k]=$v; done <<<"$LAYOUT"

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
  HOT_RE='^(ours_inc|ours_labels_inc|ffi_inc|ours_observe|[cgh][13]_(same|diff)|c1_apart)$'
  A_HOT=$(count_aborts "$HOT_RE"); N_HOT=$(count_nyi "$HOT_RE")
  # Aborts in the module's Lua (lua/ngxprom*) or NYI ones, vs those of the benchmark's
  # own loop nesting (a trace started in one timed loop running into the next one).
  A_HOT_MOD=$(awk -F'\t' -v re="$HOT_RE" '$1 ~ re && ($2 ~ /ngxprom/ || $2 ~ /NYI/)' "$ABORTS_TSV" | wc -l)
  A_LOG=$(count_aborts '^log_native$'); N_LOG=$(count_nyi '^log_native$')
  A_BASE=$(count_aborts '^(dict_incr|standin_observe|log_var)$'); N_BASE=$(count_nyi '^(dict_incr|standin_observe|log_var)$')
  JIT_LINE="jit.v ($JITDIR/jit/v.lua, $JIT_FILES traced requests): ngx-prometheus counter/gauge/histogram loops: $A_HOT trace aborts ($N_HOT NYI); log helper (logger:log): $A_LOG aborts ($N_LOG NYI); baselines (shared dict, ngx.var): $A_BASE aborts ($N_BASE NYI)."
  if [ -s "$ABORTS_TSV" ]; then
    JIT_DETAIL=$(awk -F'\t' '{print $1 ": " $2}' "$ABORTS_TSV" | sort | uniq -c | sort -rn | awk 'NR <= 15')
  fi
  JIT_LOG_NATIVE=$(awk -F'\t' '$1 == "log_native" && /NYI/ {sub(/^.* -- /, "", $2); print $2}' "$ABORTS_TSV" |
    sort | uniq -c | sort -rn | awk 'NR == 1 {sub(/^ *[0-9]+ /, ""); print}')
else
  JIT_LINE="jit.v: not available (LuaJIT's jit/v.lua not found under /usr/share/luajit*; it ships with libluajit2-5.1-common): trace aborts were not checked."
fi


# --- report ---------------------------------------------------------------------------
sample() {  # part case -> stats of net_ns
  # shellcheck disable=SC2016  # an awk program for stats(): its $1 and $f are awk's
  stats 5 -v p="$1" -v c="$2" '$1==p && $2==c {print $f}' "$RESULTS"
}
fmt_ns() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN{printf "%.1f ns (%.1f–%.1f)", m, lo, hi}'; }
declare -A MED LO HI CNT
for key in hot:ours_inc hot:ours_labels_inc hot:ffi_inc hot:dict_incr hot:ours_observe hot:standin_observe \
           solo:ours_inc solo:ours_labels_inc solo:ffi_inc solo:dict_incr solo:ours_observe solo:standin_observe \
           log:log_native log:log_var logphase:log_native logphase:log_var; do
  read -r MED[$key] LO[$key] HI[$key] CNT[$key] < <(sample "${key%%:*}" "${key#*:}")
  [ "${CNT[$key]}" -gt 0 ] || die "no samples for $key"
done
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
)
NOTES=$(
  # shellcheck disable=SC2016  # an awk program for stats(): its $1 and $f are awk's
  echo "- Hot path: ns per call, median (min–max) of $((REPS * 2)) samples ($REPS repetitions × 2 workers running at the same time; worker pids ${PIDS% }), or of $REPS samples for the \"1 worker alone\" rows (the other worker idle); N=$N iterations per loop ($N_SLOW for the shared-dict stand-ins), empty-loop cost subtracted (empty loop: median $(stats 7 -v p=hot -v c=ours_inc '$1==p && $2==c {print $f}' "$RESULTS" | awk '{printf "%.2f", $1}') ns/iteration). Both workers update the same series / the same dict keys."
  echo "- Log helper: N=$LOG_N calls per loop; content phase in both workers at once ($((REPS * 2)) samples), log phase in one worker ($REPS samples)."
  echo "- $JIT_LINE"
  [ -z "$JIT_DETAIL" ] || sed -E 's/^ *([0-9]+) /    - \1× /' <<<"$JIT_DETAIL"
  echo "- Timing: \`clock_gettime(CLOCK_MONOTONIC)\` through the FFI around a loop of N calls inside \`content_by_lua\` (or \`log_by_lua\`), minus the same loop with an empty body, timed just before and just after it (the lower of the two; the observe loops' \"empty\" loop computes the observed value too). A barrier in a shared dict starts both workers' loops within about a millisecond of each other. Cases rotate order in each repetition."
  echo "- The machine is shared and noisy: read the ratios, which come from interleaved measurements in the same run, rather than the absolute values."
)

# --- report: hot-path variants ------------------------------------------------------------
for fn in c1 c3 g1 g3 h1 h3; do
  for key in solo:${fn}_same hot:${fn}_same hot:${fn}_diff; do
    read -r "MED[$key]" "LO[$key]" "HI[$key]" "CNT[$key]" < <(sample "${key%%:*}" "${key#*:}")
    [ "${CNT[$key]}" -gt 0 ] || die "no samples for $key"
  done
done
read -r "MED[hot:c1_apart]" "LO[hot:c1_apart]" "HI[hot:c1_apart]" "CNT[hot:c1_apart]" < <(sample hot c1_apart)
[ "${CNT[hot:c1_apart]}" -gt 0 ] || die "no samples for hot:c1_apart"
f1() { awk -v v="$1" 'BEGIN{printf "%.1f", v}'; }
HOT2_TABLE=$(
  echo "| Per call, through \`family:labels(...)\` | labels | 1 worker alone | 2 workers, same series | 2 workers, different series | same ÷ alone | different ÷ alone |"
  echo "|---|---|---|---|---|---|---|"
  for fn in c1 c3 g1 g3 h1 h3; do
    case $fn in c*) op="Counter \`:inc()\`" ;; g*) op="Gauge \`:set(v)\`" ;; h*) op="Histogram \`:observe(v)\`" ;; esac
    echo "| $op | ${fn:1:1} | $(cell solo:${fn}_same) | $(cell hot:${fn}_same) | $(cell hot:${fn}_diff) | $(ratio "${MED[hot:${fn}_same]}" "${MED[solo:${fn}_same]}") | $(ratio "${MED[hot:${fn}_diff]}" "${MED[solo:${fn}_same]}") |"
  done
  echo "| Counter \`:inc()\`, different series ${APART[c1_apart]} bytes apart | 1 |  |  | $(cell hot:c1_apart) |  | $(ratio "${MED[hot:c1_apart]}" "${MED[solo:c1_same]}") |"
)
HOT2_NOTES=$(
  echo "- Same method as the table above (median (min–max) ns per call, $((REPS * 2)) samples at once, $REPS alone, N=$N; the empty loop subtracted computes a value as the loops do). Each call resolves the child through the family's cached label lookup, as a plugin does per request: 1 label \`route\`, or 3 \`service, route, method\`; histograms at the default precision. The label values are read from an array at a varying index (holding the same strings), so that LuaJIT cannot hoist the lookup out of the loop as it does for constant keys: the rows above with \`child:inc()\` and \`labels(a, b)\` constants are the cost without the lookup."
  echo "- \"Different series\": each worker updates its own series (its worker id in \`route\`). Both were made one after the other, so they are neighbours in the zone: their value words are $(for k in c1 c3 g1 g3 h1 h3; do printf '%s%s B' "$([ $k = c1 ] || echo ', ')" "${APART[${k}_diff]}"; done) apart (c1, c3, g1, g3, h1, h3; a cache line is 64 B). The last row has $(( APART[c1_apart] / 8 )) words (${APART[padding]} series) between them."
  awk -v cs="${MED[hot:c1_same]}" -v ca="${MED[hot:c1_apart]}" -v hs="${MED[hot:h1_same]}" -v hd="${MED[hot:h1_diff]}" 'BEGIN {
    printf "- **Per-worker stripes: measured, not taken.** A stripe gives each worker its own copy of a series'"'"' hot words on a cache line of its own, so two workers updating one series write different lines: what the \"different series\" column measures (each worker its own series; the last row'"'"'s two are on no common line). Stripes would take a counter update with both workers on one series from %.1f to about %.1f ns, and a histogram observation from %.1f to about %.1f ns. Their price: for a counter, a 64-byte line per worker per series (96 B → 96 + 64 × workers: 224 B with 2 workers, 1,120 B with 16); for a histogram, its count words too (2,560 at the default precision: 20 KiB per worker per series), or the bucket words stay shared and contended; and every scrape sums one copy per worker. The saving, %.0f ns on an update that meets another worker'"'"'s on the same series in the same instant, is lost in the microseconds of CPU even a bare `return 200` request costs (the request-path table): one copy per series stays.\n", cs, ca, hs, hd, cs - ca
  }'
)


# --- the section and its fragments --------------------------------------------------
echo "$TABLE"
echo "$NOTES" | fragment notes
{ echo "### Hot path: counter, gauge, histogram; 1 vs 3 labels; same vs different series"; echo; echo "$HOT2_TABLE"; echo; echo "$HOT2_NOTES"; } | fragment variants
awk \
  -v inc="${MED[hot:ours_inc]}" -v linc="${MED[hot:ours_labels_inc]}" -v ffi="${MED[hot:ffi_inc]}" \
  -v dict="${MED[hot:dict_incr]}" -v obs="${MED[hot:ours_observe]}" -v sobs="${MED[hot:standin_observe]}" \
  -v sinc="${MED[solo:ours_inc]}" -v sdict="${MED[solo:dict_incr]}" -v sffi="${MED[solo:ffi_inc]}" \
  -v slinc="${MED[solo:ours_labels_inc]}" \
  -v sobs1="${MED[solo:ours_observe]}" -v ssobs="${MED[solo:standin_observe]}" \
  -v ln="${MED[log:log_native]}" -v lv="${MED[log:log_var]}" \
  -v pn="${MED[logphase:log_native]}" -v pv="${MED[logphase:log_var]}" \
  -v jitlog="$JIT_LOG_NATIVE" -v ahot="${A_HOT:-?}" -v nhot="${N_HOT:-?}" '
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
}' | fragment commentary
{
  echo "# part case rep pid net_ns loop_ns empty_ns"
  cat "$RESULTS"
  echo "# series_layout case bytes_between_the_two_workers_value_words"
  echo "$LAYOUT"
} | fragment raw

# --- numbers (bench/targets.tsv): medians in ns per call, PART.CASE --------------------
# (pair: both workers at once; solo: one alone; log, logphase: the log helper.)
for key in $(printf '%s\n' "${!MED[@]}" | sort); do k=${key/#hot:/pair:}; put_value "${k/:/.}" "${MED[$key]}"; done
for k in $(printf '%s\n' "${!APART[@]}" | sort); do put_value "apart.$k" "${APART[$k]}"; done
if [ "$JITV" = yes ]; then
  put_value jit.aborts "$A_HOT"; put_value jit.nyi "$N_HOT"; put_value jit.aborts_module "$A_HOT_MOD"
  put_value jit.aborts_log "$A_LOG"; put_value jit.aborts_baselines "$A_BASE"
fi
log "done ($SECONDS s)"
