#!/usr/bin/env bash
# Profile: instructions per call of the hot path, deterministically: a single-process
# nginx of bench/bench.conf (tiny zones) under callgrind (bench/common.sh's
# callgrind_nginx and callgrind_window, with valgrind's default --smc-check on x86-64,
# all-non-file, the flag the helper gives), per case a warm-up, then runs of N1 and N2
# calls each measured alone: (total(N2) - total(N1)) / (N2 - N1); and where they go
# (self cost by function). Whether perf has hardware counters here. Full mode only
# (BENCH_CALLGRIND=1: in smoke mode too; BENCH_CALLGRIND=0: never), ~20 s.
#
#   bench/profile.sh                  a step of bench/run.sh, or alone (own nginx)
#
# Prints its section; fragment raw; numbers in OUT/profile.tsv (instructions per call
# by case: CASE, and CASE.FUNCTION for the self cost of a function, luajit_trace for
# the compiled Lua).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
# shellcheck source=bench/bench-nginx.sh
. "$ROOT/bench/bench-nginx.sh"
step_init profile
CGP=$(mktemp -d "${TMPDIR:-/tmp}/ngxprom-profile.XXXXXX"); chmod 755 "$CGP"
CG_PID=""
cleanup() {
  if [ -n "$CG_PID" ] && kill -0 "$CG_PID" 2>/dev/null; then kill -QUIT "$CG_PID" 2>/dev/null; wait "$CG_PID" 2>/dev/null || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $CGP"; else rm -rf "$CGP"; fi
}
trap cleanup EXIT

# perf needs hardware counters (often missing in VMs); callgrind counts instructions.
if command -v perf >/dev/null && perf stat -x, -e instructions true 2>&1 >/dev/null | grep -q '^[0-9]'; then
  PERF_LINE="perf: hardware counters available (\`perf stat -e instructions\` works)."
else
  PERF_LINE="perf: not available on this machine (\`perf stat -e instructions true\` reports the event as not supported: no hardware counters in this VM), so instruction counts come from callgrind."
fi
CG_TSV="$CGP/callgrind.tsv"   # case instructions-per-call breakdown
: >"$CG_TSV"
CG_NOTE=""
CASES=(ffi_inc ours_inc ours_inc_x ours_labels_inc c1_same c3_same g1_same g3_same ours_observe ours_observe_x h1_same h3_same)
CG_N1=100000; CG_N2=200000
if { [ "$SMOKE" = 1 ] && [ "${BENCH_CALLGRIND:-}" != 1 ]; } || [ "${BENCH_CALLGRIND:-1}" = 0 ]; then
  CG_NOTE="callgrind: skipped ($( [ "$SMOKE" = 1 ] && echo "smoke run" || echo "BENCH_CALLGRIND=0"))."
elif ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  CG_NOTE="callgrind: not available (valgrind is not installed)."
else
  T4=$SECONDS
  CGPORT=$(pick_port) || die "no free port for callgrind"
  CGUPORT=$(pick_port "$CGPORT") || die "no free port for callgrind"
  "$ROOT/scripts/render-conf.sh" bench/bench.conf "$CGP" WORKERS=1 PORT="$CGPORT" UPORT="$CGUPORT" \
    JITDIR="${JITDIR:-$ROOT/bench}" SCRAPE_ZONE=1m SIZES_ZONE=1m MEM_ZONE=1m USER="#" >/dev/null
  sed -i 's/bench_knyar 96m/bench_knyar 1m/' "$CGP/nginx.conf"
  mkdir -p "$CGP/jit"
  callgrind_nginx "$CGP"
  CGB="http://127.0.0.1:$CGPORT"
  for _ in $(seq 300); do curl -sf -o /dev/null "$CGB/info" 2>/dev/null && break; sleep 0.2; done
  declare -A DUMP
  count() { curl -sf -o /dev/null "$CGB/count?case=$1&n=$2"; }
  if curl -sf -o /dev/null "$CGB/info" 2>/dev/null; then
    for c in "${CASES[@]}"; do
      curl -sf -o /dev/null "$CGB/count?case=$c&n=1&warm=1" || { CG_NOTE="callgrind: $c failed"; break; }
      for n in "$CG_N1" "$CG_N2"; do
        callgrind_window "$CGP" "cg-$c-$n" count "$c" "$n" ||
          { CG_NOTE="callgrind: $c failed or left no dump (see valgrind.log)"; break 2; }
        DUMP[$c-$n]=$CG_DUMP
      done
    done
    kill -QUIT "$CG_PID" 2>/dev/null; wait "$CG_PID" 2>/dev/null || true; CG_PID=""
    [ -n "$CG_NOTE" ] || clean_log "$CGP"
    [ -n "$CG_NOTE" ] || for c in "${CASES[@]}"; do
      d1=${DUMP[$c-$CG_N1]}; d2=${DUMP[$c-$CG_N2]}
      per=$(awk -v a="$(cg_total "$d1")" -v b="$(cg_total "$d2")" -v n=$((CG_N2 - CG_N1)) 'BEGIN{printf "%.0f", (b - a) / n}')
      # Self cost by function in the larger run, per call: the module's function (code
      # inlined into it counted in), libm helpers, and LuaJIT's trace (unnamed code).
      parts=$(callgrind_annotate --inclusive=no --threshold=100 --auto=no "$d2" 2>/dev/null | awk -v n="$CG_N2" '
        /file:function/ { infn = 1; next }
        infn && /^-----/ && seen { infn = 0 }
        !infn { next }
        /ld-linux|libc-start|libc_start|\(below main\)|:main( |$)|PROGRAM TOTALS/ { next }
        /^ *[0-9,]+ \(/ {
          seen = 1
          ir = $1; gsub(",", "", ir); name = $0
          sub(/^ *[0-9,]+ \([ 0-9.]+%\) +/, "", name); sub(/ \[.*\]$/, "", name)
          if (name ~ /^\?\?\?:0x/) fn = "luajit-trace"; else { fn = name; sub(/^.*:/, "", fn) }
          s[fn] += ir
        }
        END { for (f in s) if (s[f] / n >= 1) printf "%s %.0f\n", f, s[f] / n }' | sort -k2,2nr |
        awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
      printf '%s\t%s\t%s\n' "$c" "$per" "$parts" >>"$CG_TSV"
    done
    log "callgrind instruction counts done ($((SECONDS - T4)) s)"
  else
    kill "$CG_PID" 2>/dev/null; wait "$CG_PID" 2>/dev/null || true; CG_PID=""
    CG_NOTE="callgrind: nginx did not start under valgrind (see $CGP/valgrind.log)."
  fi
fi

case_desc() {
  case $1 in
    ffi_inc) echo "bare FFI \`ngx_prom_counter_add(h, 1)\`" ;;
    ours_inc) echo "counter \`child:inc()\`" ;;
    ours_labels_inc) echo "counter \`labels(\"GET\", \"/api/items\"):inc()\` (constant keys)" ;;
    c1_same) echo "counter \`labels(a):inc()\`" ;;
    c3_same) echo "counter \`labels(a, b, c):inc()\`" ;;
    g1_same) echo "gauge \`labels(a):set(v)\`" ;;
    g3_same) echo "gauge \`labels(a, b, c):set(v)\`" ;;
    ours_observe) echo "histogram \`child:observe(v)\`" ;;
    ours_inc_x) echo "counter \`child:inc(1, id)\`, exemplars on (32-byte id)" ;;
    ours_observe_x) echo "histogram \`child:observe(v, id)\`, exemplars on (32-byte id)" ;;
    h1_same) echo "histogram \`labels(a):observe(v)\`" ;;
    h3_same) echo "histogram \`labels(a, b, c):observe(v)\`" ;;
    *) echo "$1" ;;
  esac
}
PROFILE=$(
  if [ -s "$CG_TSV" ]; then
    echo "| Per call, 1 worker (callgrind) | instructions | where (self instructions per call) |"
    echo "|---|---|---|"
    while IFS=$'\t' read -r c per parts; do
      echo "| $(case_desc "$c") | $per | $parts |"
    done <"$CG_TSV"
    echo
    echo "- Instructions per loop iteration (the Lua loop included) = (total of a run of $CG_N2 calls − total of a run of $CG_N1) ÷ $((CG_N2 - CG_N1)), on a single-process nginx under \`valgrind --tool=callgrind\` after a warm-up (traces compiled). \"where\": self cost by function in the $CG_N2-call run ÷ $CG_N2; \`luajit-trace\` is the compiled Lua loop (label lookup, wrapper), \`ngx_prom_*\` the module's FFI entry with what is inlined into it, \`trunc\`/\`round\` the soft-float helpers that \`f64::fract\`/\`f64::round\` call (compiled for baseline x86-64, without SSE4.1's \`roundsd\`)."
  fi
  echo "- $PERF_LINE${CG_NOTE:+ $CG_NOTE}"
)
echo "### Profile: instructions per call"
echo
echo "$PROFILE"
{
  echo "# callgrind case instructions_per_call breakdown"
  cat "$CG_TSV"
} | fragment raw
while IFS=$'\t' read -r c per parts; do
  put_value "$c" "$per"
  tr "," "\n" <<<"$parts" | while read -r fn ir; do [ -z "$fn" ] || put_value "$c.${fn//-/_}" "$ir"; done
done <"$CG_TSV"
log "done ($SECONDS s)"
