#!/usr/bin/env bash
# ngx-prometheus benchmarks: runs the steps below (each a script in bench/ that measures
# one thing, side by side with a baseline measured in the same run) and assembles their
# sections into BENCHMARKS.md, with the targets table of bench/targets.tsv.
#
#   ./bench/run.sh                  full run (~15 minutes); refreshes BENCHMARKS.md
#   BENCH_SMOKE=1 ./bench/run.sh    tiny sizes, a few minutes; checks that every step
#                                   runs (exits non-zero if one fails, or nginx logged an
#                                   error) but never judges timings; prints the report,
#                                   BENCHMARKS.md is left alone
#   BENCH_ONLY="hot scrape" ./bench/run.sh   these steps only (names below), in the
#                                   table's order; prints the report
#
# A step prints its section and writes its numbers ("key<TAB>value", OUT/STEP.tsv) and
# any other fragment of the report (OUT/STEP.PART.md) to OUT, a work directory
# (BENCH_OUT; bench/common.sh step_init); each also runs alone. The steps marked
# "server" measure in one nginx of bench/bench.conf started here (2 workers, free 19xxx
# ports, a temporary prefix), one after the other, each leaving its series there;
# stopped on exit, its error log checked.
#
# Overrides (optional): BENCH_SMOKE, BENCH_ONLY, BENCH_REPORT (write the report there),
# BENCH_KEEP=1 (keep the temporary directories), BENCH_CALLGRIND=0|1 (instruction counts
# under valgrind; default: full mode only); those of the steps: BENCH_N, BENCH_LOG_N,
# BENCH_REPS, BENCH_SERIES, BENCH_SCRAPES, BENCH_SIZES (e.g. "1000 10000 100000"),
# BENCH_SIZE_SCRAPES, BENCH_LOAD_REPS, BENCH_LOAD_SECONDS, BENCH_LOAD_CONNECTIONS
# (bench/bench-nginx.sh), BENCH_E2E_*, BENCH_ROUTING_*, BENCH_ROUTES, BENCH_RP_*, BENCH_CPU_*,
# BENCH_PEER_DIR (in their scripts).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "${BENCH_SMOKE:-0}" in 0 | "" | no | false) SMOKE=0 ;; *) SMOKE=1 ;; esac
export BENCH_SMOKE=$SMOKE

# step           script            server  what it measures
STEPS="
hot              hot-path.sh       server  ns per counter/gauge/histogram update (1 vs 3 labels, same vs different series, 2 workers at once and 1 alone) and log-helper call, beside shared-dict stand-ins; jit.v trace aborts
scrape           scrape.sh         server  scrape of 10k histogram routes + 10k counters: the module vs a Lua get_keys/sort/concat renderer
sizes            scrape-sizes.sh   server  scrape time to first byte, total and bytes at 1k/10k/100k series, text and gzip; worker RSS before and after
memory           memory.sh         server  zone bytes per counter/gauge/histogram series (precision 1, 2, 3)
load             scrape-load.sh    server  p50..max of proxied requests while the 100k series are scraped every second (text, gzip) or not
profile          profile.sh        -       instructions per hot-path call under callgrind, and where they go
e2e              e2e.sh            -       the gateway with the prometheus plugin on, off, and nginx without Lua: requests/s, latency, CPU and instructions per request
routing          routing.sh        -       the proxy and Admin writes with 3 routes vs 2,000 routes of 64 paths
request_path     request-path.sh   -       each usage shape of the Lua API in log_by_lua beside nginx-lua-prometheus: instructions and CPU per request
worker_cpu       worker-cpu.sh     -       the four updates of a request end to end on 2 workers, ours, the drop-in and nginx-lua-prometheus: worker CPU per request, paired by repetition
peer             peer.sh           -       nginx-lua-prometheus itself beside ours: tight loops, scrape, p99 while scraping, series visible after recording
labels           labels.sh         -       what constant labels add to a render (the encoder alone)
lifecycle        lifecycle.sh      -       the expiry sweep's cost and a million churned label sets (the store alone)
"

# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

ALL=$(awk 'NF {print $1}' <<<"$STEPS")
ONLY=${BENCH_ONLY:-}
for s in $ONLY; do grep -qx "$s" <<<"$ALL" || die "BENCH_ONLY: no step '$s' (steps: $(paste -sd' ' <<<"$ALL"))"; done
selected() { [ -z "$ONLY" ] || grep -qw -- "$1" <<<"$ONLY"; }

# (RUN: the server's helpers set WORK, PREFIX and their own variables.)
RUN=$(mktemp -d "${TMPDIR:-/tmp}/ngxprom-bench-run.XXXXXX")
chmod 755 "$RUN"
export BENCH_OUT="$RUN/out"
mkdir -p "$BENCH_OUT"
PREFIX=""
cleanup() {
  local rc=$?
  set +e
  [ -z "$PREFIX" ] || bench_server_stop "$rc"
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The benchmark server, for the steps that measure in it.
LUAJIT_VERSION="LuaJIT ?"
NEED_SERVER=0
while read -r s; do if selected "$s"; then NEED_SERVER=1; fi; done < <(awk '$3 == "server" {print $1}' <<<"$STEPS")
if [ "$NEED_SERVER" = 1 ]; then
  # shellcheck source=bench/bench-nginx.sh
  . "$ROOT/bench/bench-nginx.sh"
  bench_server_start "$RUN/server"
  export BENCH_SERVER="$PREFIX/server.env"
fi

while read -r name script server what; do
  if [ -z "$name" ] || ! selected "$name"; then continue; fi
  log "== $name ($script): $what"
  "$ROOT/bench/$script" >"$BENCH_OUT/$name.md" || die "step $name ($script) failed"
  if [ "$server" = server ]; then clean_log "$PREFIX"; fi
done <<<"$STEPS"
if [ -n "$PREFIX" ]; then bench_server_stop 0; PREFIX=""; fi
printf 'seconds\t%s\n' "$SECONDS" >"$BENCH_OUT/run.tsv"

# --- the report ----------------------------------------------------------------------
TARGETS=$(python3 "$ROOT/bench/targets.py" "$ROOT/bench/targets.tsv" "$BENCH_OUT") || die "bench/targets.py failed"
# part NAME...: the fragments NAME (OUT/NAME.md) the steps wrote, each followed by a
# blank line; list NAME...: the same run together (list items of several steps).
part() {
  local n
  for n in "$@"; do [ ! -s "$BENCH_OUT/$n.md" ] || { cat "$BENCH_OUT/$n.md"; echo; }; done
}
list() {
  local n any=""
  for n in "$@"; do [ ! -s "$BENCH_OUT/$n.md" ] || { cat "$BENCH_OUT/$n.md"; any=1; }; done
  [ -z "$any" ] || echo
}
# heading TITLE NAME...: "## TITLE" when one of the fragments NAME was written.
heading() {
  local title=$1 n; shift
  for n in "$@"; do [ ! -s "$BENCH_OUT/$n.md" ] || { echo "## $title"; echo; return; }; done
}
COMMAND="./bench/run.sh"
[ -z "$ONLY" ] || COMMAND="BENCH_ONLY=\"$ONLY\" $COMMAND"
[ "$SMOKE" = 0 ] || COMMAND="BENCH_SMOKE=1 $COMMAND"
report() {
  echo "# Benchmarks$([ "$SMOKE" = 1 ] && echo ' (smoke: tiny sizes, timings meaningless)')"
  echo
  echo "Generated by \`./bench/run.sh\` (\`make bench\`); rerun it to refresh this file. Two sections"
  echo "measure **nginx-lua-prometheus itself** (unmodified, loaded from \`../shared/peers/nginx-lua-prometheus\`"
  echo "in the same nginx): \"Side by side with nginx-lua-prometheus\" and \"The Lua API on the request path\"."
  echo "The baselines of the other sections are **stand-ins written for this benchmark** (bench/bench.lua):"
  echo "they do what that library does at its core (a \`lua_shared_dict\` \`incr\` per update; a linear bucket"
  echo "search then bucket/sum/count \`incr\`; \`get_keys\` + \`table.sort\` + concatenation to render);"
  echo "numbers for the real library quoted from \`../shared/ANCHORS.md\` there are for orientation only."
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Command: \`$COMMAND\` ($([ "$SMOKE" = 1 ] && echo "smoke mode" || echo "full mode")$([ -z "$ONLY" ] || echo ", these steps only"); \`BENCH_SMOKE=1 ./bench/run.sh\` is the CI smoke run)"
  echo "- Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), Linux $(uname -r), $(awk '/MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
  echo "- Software: nginx $(env_get NGINX_VERSION), lua-nginx-module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo "?"), $LUAJIT_VERSION; 2 worker processes"
  echo "- Run time: $SECONDS s"
  echo
  echo "## Targets"
  echo
  echo "Each target (bench/targets.tsv) against this run's medians (details in the sections below)."
  echo
  echo "$TARGETS"
  echo
  echo "## Results"
  echo
  part peer request_path worker_cpu hot scrape e2e routing hot.variants sizes load memory profile
  heading "Series lifecycle" lifecycle
  part lifecycle
  heading "Constant labels" labels
  part labels
  # Before-and-after records of past changes (bench/ab.sh runs), kept across runs.
  if compgen -G "$ROOT/bench/history/*.md" >/dev/null; then
    echo "## Before and after"
    echo
    for f in "$ROOT"/bench/history/*.md; do cat "$f"; echo; done
  fi
  heading "How it was measured" hot.notes scrape.notes
  list hot.notes scrape.notes
  heading "Commentary" hot.commentary scrape.commentary
  list hot.commentary scrape.commentary
  local raw; raw=$(cat "$BENCH_OUT"/{hot,scrape,sizes,load,memory,profile}.raw.md 2>/dev/null || true)
  if [ -n "$raw" ]; then
    echo "<details><summary>Raw samples</summary>"
    echo
    echo '```'
    echo "$raw"
    echo '```'
    echo
    echo "</details>"
  fi
}
if [ -n "${BENCH_REPORT:-}" ]; then
  report >"$BENCH_REPORT"; log "wrote $BENCH_REPORT ($SECONDS s)"
elif [ "$SMOKE" = 1 ] || [ -n "$ONLY" ]; then
  report; log "$([ "$SMOKE" = 1 ] && echo "smoke run" || echo "run of $ONLY") OK ($SECONDS s)"
else
  report >"$ROOT/BENCHMARKS.md"; log "wrote BENCHMARKS.md ($SECONDS s)"
fi
