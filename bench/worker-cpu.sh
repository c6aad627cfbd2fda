#!/usr/bin/env bash
# End to end on two workers: the worker CPU that the same four updates per request
# (bench/request_path.lua's shape 8: labels {svc1, route1, status}, a 21-bucket
# histogram) cost through ngxprom, through the drop-in require("prometheus") and through
# nginx-lua-prometheus, in one nginx, over the same block without metric calls.
#
#   bench/worker-cpu.sh             full run; prints a Markdown section (BENCHMARKS.md)
#   BENCH_SMOKE=1 bench/worker-cpu.sh
#
# Why beside the instruction counts of bench/request-path.sh: those count one process,
# so they cannot see what two workers running at once pay and one does not (a shared
# cache line written by both, the peer's per-second timer that writes its dict). This
# counts the workers' utime+stime per request while wrk keeps both busy.
#
# One nginx (request-path.sh's, 2 workers) serves the four locations; each repetition
# measures all four back to back, in an order rotated per repetition, for S seconds
# each after 1 s of warm-up (wrk -t1 -c16 by default). The comparisons are taken within
# a repetition (paired): a machine that gets busier between repetitions moves the four
# numbers of one repetition together, and the median of the paired differences does not
# move with it. Overrides: BENCH_CPU_REPS (8), BENCH_CPU_SECONDS (2), BENCH_CPU_WRK.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
step_init worker_cpu
find_peer
[ "$PEER" = true ] || { echo "### End to end: worker CPU per request, ours beside nginx-lua-prometheus"; echo; echo "Not measured: $PEERDIR has no nginx-lua-prometheus."; exit 0; }

REPS=${BENCH_CPU_REPS:-$((SMOKE ? 1 : 8))}
SECS=${BENCH_CPU_SECONDS:-$((SMOKE ? 1 : 2))}
WRK=${BENCH_CPU_WRK:-"-t1 -c16"}
RAW=worker_cpu_raw
BENCH_CALLGRIND=0 BENCH_RP_ONLY="none8 ours8 drop8 peer8" BENCH_RP_CPU_REPS=$REPS \
  BENCH_RP_SECONDS=$SECS BENCH_RP_WRK="$WRK" BENCH_RP_STEP=$RAW \
  "$ROOT/bench/request-path.sh" >/dev/null || die "bench/request-path.sh failed"

# us LOC REP: the worker CPU per request of LOC in repetition REP.
us() { value "$RAW" "cpu_rep_$2_$1"; }
# column LOC: LOC's numbers, one a line.
column() { local r; for r in $(seq "$REPS"); do us "$1" "$r"; done; }
# paired A B: A - B within each repetition, one a line.
paired() { local r; for r in $(seq "$REPS"); do awk -v a="$(us "$1" "$r")" -v b="$(us "$2" "$r")" 'BEGIN {printf "%.3f\n", a - b}'; done; }
# spread: "median (min–max)" of the numbers on stdin.
spread() { local v; v=$(cat); printf '%.2f (%.2f–%.2f)' "$(median <<<"$v")" "$(sort -g <<<"$v" | head -1)" "$(sort -g <<<"$v" | tail -1)"; }
# below: how many of the numbers on stdin are below 0.
below() { awk '$1 < 0 {n++} END {print n + 0}'; }

declare -A NAMES=([ours8]="ngxprom (\`ngxprom.counter\`, …)" [drop8]="the drop-in \`require(\"prometheus\")\`" [peer8]="nginx-lua-prometheus")
echo "### End to end: worker CPU per request, ours beside nginx-lua-prometheus"
echo
echo "\`bench/worker-cpu.sh\` ($([ "$SMOKE" = 1 ] && echo "smoke run" || echo "full run"); $(env_get DESCRIPTION); peer at commit ${PEER_REV:-?})."
echo "The four updates of shape (8) (labels {svc1, route1, status}, a 21-bucket histogram) in"
echo "\`log_by_lua\`, 2 workers, \`wrk $WRK\` for $SECS s per location after 1 s of warm-up, $REPS"
echo "repetitions, locations in an order rotated per repetition; utime+stime of the workers ÷"
echo "requests. **added** = over the same block without metric calls, and **vs the peer**, both"
echo "taken within each repetition, then their median (min–max)."
echo
echo "| updates through | µs/request | added | vs the peer | cheaper than the peer in |"
echo "|---|---|---|---|---|"
echo "| none (the four \`ngx.var\` reads only) | $(column none8 | spread) | | | |"
for loc in ours8 drop8 peer8; do
  added=$(paired "$loc" none8 | median)
  if [ "$loc" = peer8 ]; then vs=""; won=""; else
    vs=$(paired "$loc" peer8 | spread); won="$(paired "$loc" peer8 | below) of $REPS"
    put_value "${loc}_minus_peer" "$(paired "$loc" peer8 | median)"
  fi
  put_value "${loc}_added" "$added"
  echo "| ${NAMES[$loc]} | $(column "$loc" | spread) | $(paired "$loc" none8 | spread) | $vs | $won |"
done
echo
