#!/usr/bin/env bash
# The Lua API on the request path, ours beside nginx-lua-prometheus (the peer), per
# usage shape (bench/request_path.lua): what the metric calls of a log_by_lua block add
# to a request, over the same block without them.
#
#   bench/request-path.sh            full run; prints a Markdown section (BENCHMARKS.md);
#                                    numbers in OUT/request_path.tsv (common.sh step_init)
#   BENCH_SMOKE=1 bench/request-path.sh   a few requests per location, no valgrind
#
# 1. Instructions per request (deterministic): one nginx process under
#    `valgrind --tool=callgrind`; per location, W warm-up requests (LuaJIT compiles
#    what it will), then counters zeroed, M requests on one keep-alive connection,
#    a dump; its total / M. A full GC before each window makes the GC work in it
#    depend on the window's requests only, not on where the cycle happened to be.
#    Each location runs in an nginx process of its own (a fresh LuaJIT), its R
#    repetitions in a row. Repeated R times, locations interleaved; the median and
#    the spread (max - min) are reported, with the trace events (started, stopped,
#    aborted and why) each location caused, from jit.attach.
# 2. Worker CPU per request: nginx with 2 workers natively, wrk on each location for
#    S seconds, R interleaved repetitions; utime+stime of the workers / requests.
#
# The peer is loaded from ../shared/peers/nginx-lua-prometheus (BENCH_PEER_DIR) when
# present; without it the peer's column says so. Overrides: BENCH_RP_WARM, BENCH_RP_N,
# BENCH_RP_REPS, BENCH_RP_CPU_REPS, BENCH_RP_SECONDS, BENCH_RP_WRK (wrk's options; -t2 -c4), BENCH_CALLGRIND=0,
# BENCH_RP_ONLY, BENCH_RP_STEP (the step name its numbers are put under).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
if [ "$SMOKE" = 1 ]; then
  WARM=${BENCH_RP_WARM:-50}; N=${BENCH_RP_N:-50}; REPS=${BENCH_RP_REPS:-1}; SECS=${BENCH_RP_SECONDS:-1}
else
  WARM=${BENCH_RP_WARM:-600}; N=${BENCH_RP_N:-1000}; REPS=${BENCH_RP_REPS:-3}; SECS=${BENCH_RP_SECONDS:-2}
fi
WRK_ARGS=${BENCH_RP_WRK:-"-t2 -c4"}
# The CPU column is within this machine's noise (the instructions are the measure here);
# bench/worker-cpu.sh repeats shape 8 end to end, paired, often enough to be trusted.
CPU_REPS=${BENCH_RP_CPU_REPS:-$((SMOKE ? 1 : 2))}

step_init "${BENCH_RP_STEP:-request_path}"   # bench/worker-cpu.sh runs it as a step of its own
find_peer
JITDIR=$(find_jitdir)   # jit/vmdef.lua, for the names of trace events

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ngxprom-rp.XXXXXX")
# The CPU run's workers are not root: they must reach lib/ngx_prometheus.so to require it.
chmod 755 "$WORK"
MASTER=""
cleanup() {
  if [ -n "$MASTER" ] && kill -0 "$MASTER" 2>/dev/null; then kill -QUIT "$MASTER"; wait "$MASTER" 2>/dev/null || true; fi
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(free_port)
BASE=http://127.0.0.1:$PORT

# Locations: the shapes, each as none (baseline), ours and the peer's.
LOCS=(bare)
for s in 1 2 3 4 5 6 8; do
  LOCS+=("none$s" "ours$s")
  [ "$s" = 8 ] && LOCS+=("drop$s")   # the drop-in require("prometheus"), shape 8 only
  [ "$PEER" = true ] && [ "$s" != 6 ] && LOCS+=("peer$s")
done
LOCS+=(rec px pxrec)
# BENCH_RP_ONLY="none1 ours1": measure these locations alone (while working on one shape).
[ -n "${BENCH_RP_ONLY:-}" ] && read -r -a LOCS <<<"$BENCH_RP_ONLY"

render() {  # render PREFIX WORKERS
  "$ROOT/scripts/render-conf.sh" bench/request-path.conf "$1" WORKERS="$2" PORT="$PORT" \
    PEERDIR="$PEERDIR" PEER="$PEER" JITDIR="${JITDIR:-$ROOT/bench}" USER="#" >/dev/null
  local v log
  for v in bare $(for s in 1 2 3 4 5 6 8; do echo "none$s ours$s"; [ "$s" = 8 ] && echo "drop$s"; [ "$PEER" = true ] && [ "$s" != 6 ] && echo "peer$s"; done); do
    log=""; [ "$v" = bare ] || log=" log_by_lua_block { rp.f.$v() }"
    printf 'server {\n    listen 127.0.0.1:%s;\n    server_name %s;\n    location / { return 200 "ok\\n";%s }\n}\n' \
      "$PORT" "$v" "$log"
  done >"$1/variants.conf"
  # The native recorder (prometheus_record, no Lua): rec records what ngxprom.log does
  # in shape 6 (requests by code, latency, bytes both ways, one label) over bare; pxrec
  # adds per-peer tries (upstreams=on) to a proxied request, over the same proxied
  # request unrecorded (px; the backend is the control server's /rp_backend).
  {
    printf 'server {\n    listen 127.0.0.1:%s;\n    server_name rec;\n    location / { prometheus_record zone=rp labels=location,code namespace=rp_native; return 200 "ok\\n"; }\n}\n' "$PORT"
    for v in px pxrec; do
      rec=""; [ "$v" = pxrec ] && rec="prometheus_record zone=rp labels=location,code upstreams=on namespace=rp_native_px; "
      printf 'server {\n    listen 127.0.0.1:%s;\n    server_name %s;\n    location / { %sproxy_pass http://127.0.0.1:%s/rp_backend; }\n}\n' \
        "$PORT" "$v" "$rec" "$PORT"
    done
  } >>"$1/variants.conf"
}
wait_up() { for _ in $(seq 600); do curl -sf -o /dev/null -H "Host: bare" "$BASE/" && return 0; sleep 0.1; done; return 1; }
# requests LOCATION COUNT: COUNT GETs on one keep-alive connection.
requests() {
  gets "$WORK/curl-$1-$2.cfg" "$2" "$BASE/" "Host: $1" || die "requests to $1 failed"
}

declare -A IR CPU TRACES SPLIT
# split DUMP N: "vm trace module" instructions per request: LuaJIT's VM (interpreter,
# GC, runtime: the libluajit object, or the nginx binary's LuaJIT when linked in),
# compiled traces (code in no object), and our module.
split() {
  callgrind_annotate --inclusive=no --threshold=100 --auto=no "$1" 2>/dev/null | awk -v n="$2" '
    /file:function/ { on = 1; next }
    !on || !/^ *[0-9,]+ \(/ { next }
    /ld-linux|libc-start|libc_start|\(below main\)|:main( |$)|PROGRAM TOTALS/ { next }
    {
      ir = $1; gsub(",", "", ir)
      if ($0 ~ /\[\?\?\?\]$/) t += ir
      else if ($0 ~ /libluajit|lj_[a-z_]+ \[|lj_BC_|lj_vm_/) v += ir
      else if ($0 ~ /ngx_prometheus/) m += ir
    }
    END { printf "%.0f %.0f %.0f", v / n, t / n, m / n }'
}
# --- 1. instructions per request under callgrind --------------------------------------
CG_NOTE=""
if [ "$SMOKE" = 1 ] || [ "${BENCH_CALLGRIND:-1}" = 0 ]; then
  CG_NOTE="skipped ($([ "$SMOKE" = 1 ] && echo "smoke run" || echo "BENCH_CALLGRIND=0"))"
elif ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
  CG_NOTE="valgrind is not installed"
else
  P="$WORK/cg"; render "$P" 1
  T=$SECONDS
  # Each location in an nginx process of its own: LuaJIT's traces of shared code
  # (resty.core's ngx.var, ours) are then made by that location's requests alone. In
  # one process the order of locations decided them: a baseline could stay in the
  # interpreter for a whole run because another location's traces came first.
  for loc in "${LOCS[@]}"; do
    callgrind_nginx "$P"; MASTER=$CG_PID
    wait_up || die "nginx under valgrind did not start (see $P/valgrind.log)"
    for rep in $(seq "$REPS"); do
      curl -sf -o /dev/null "$BASE/rp_trace?tag=$loc-$rep"
      requests "$loc" "$WARM"
      curl -sf -o /dev/null "$BASE/rp_gc"
      callgrind_window "$P" "$loc-$rep" requests "$loc" "$N" || die "no callgrind dump for $loc"
      TRACES[$loc-$rep]=$(curl -sf "$BASE/rp_trace?tag=idle" | sed -n 's/^[^;]*; *//p')
      IR[$loc]+="$(per_request "$CG_DUMP" "$N") "
      SPLIT[$loc]=$(split "$CG_DUMP" "$N")
    done
    kill -QUIT "$MASTER"; wait "$MASTER" 2>/dev/null || true; MASTER=""
  done
  log "callgrind done ($((SECONDS - T)) s)"
  clean_log "$P"
fi

# --- 2. worker CPU per request, natively -----------------------------------------------
CPU_NOTE=""
if ! command -v wrk >/dev/null; then
  CPU_NOTE="wrk is not installed"
else
  P="$WORK/cpu"; render "$P" 2
  "$NGINX_BIN" -p "$P" -c "$P/nginx.conf" || die "nginx did not start"
  MASTER=$(cat "$P/nginx.pid" 2>/dev/null || true)
  for _ in $(seq 50); do [ -n "$MASTER" ] || { sleep 0.1; MASTER=$(cat "$P/nginx.pid" 2>/dev/null || true); }; done
  wait_up || die "nginx did not answer"
  HZ=$(getconf CLK_TCK)
  for rep in $(seq "$CPU_REPS"); do
    # Rotated per repetition: no location always follows the same one.
    for loc in $(rotate "$rep" "${LOCS[@]}"); do
      # shellcheck disable=SC2086 # WRK_ARGS is a list of wrk's options
      wrk $WRK_ARGS -d1s -H "Host: $loc" "$BASE/" >/dev/null 2>&1 || true   # warm-up
      before=$(workers_cpu "$P")
      # shellcheck disable=SC2086
      out=$(wrk $WRK_ARGS -d"${SECS}s" -H "Host: $loc" "$BASE/" 2>&1) || die "wrk on $loc: $out"
      after=$(workers_cpu "$P")
      ! grep -q "Non-2xx" <<<"$out" || die "wrk on $loc: $out"
      reqs=$(awk '/requests in/ {print $1}' <<<"$out")
      us=$(awk -v t=$((after - before)) -v hz="$HZ" -v r="$reqs" 'BEGIN {printf "%.3f", t / hz / r * 1e6}')
      CPU[$loc]+="$us "
      put_value "cpu_rep_${rep}_$loc" "$us"
      log "cpu rep $rep $loc $us µs/request ($reqs requests)"
    done
  done
  kill -QUIT "$MASTER"; MASTER=""
  clean_log "$P"
fi

# --- report ---------------------------------------------------------------------------
stat() {  # stat VALUES: "median (min–max)"
  local vals; vals=$(tr ' ' '\n' <<<"$1" | sed '/^$/d')
  [ -n "$vals" ] || { echo "—"; return; }
  printf '%s (%s–%s)' "$(median <<<"$vals")" "$(sort -g <<<"$vals" | head -1)" "$(sort -g <<<"$vals" | tail -1)"
}
med() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | median; }
added() {  # added VALUES_OF_LOC VALUES_OF_BASE [DECIMALS]: difference of the medians
  local a b; a=$(med "$1"); b=$(med "$2")
  [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" -v d="${3:-0}" 'BEGIN {printf "%.*f", d, a - b}' || echo ""
}
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0 && b > 0) printf "%.1f×", b / a; else print "—"}' || echo "—"; }

NAMES=("" "inc(1, {a, b, c}), fresh table" "labels(a, b, c):inc() (peer: inc with a table)"
  "a child resolved once (peer: constant labels)" "observe(tonumber(ngx.var.request_time), {route})"
  "the four updates (status, latency, bytes sent, received)" "ngxprom.log (peer: the four updates)")
NAMES[8]="the four updates, labels {svc1, route1, status}, 21 buckets"
echo "### The Lua API on the request path, ours beside nginx-lua-prometheus"
echo
echo "\`bench/request-path.sh\` ($([ "$SMOKE" = 1 ] && echo "smoke run" || echo "full run"); $(env_get DESCRIPTION); peer: $([ "$PEER" = true ] && echo "nginx-lua-prometheus at commit ${PEER_REV:-?}" || echo "absent"))."
echo "Each location answers \`return 200\` and runs one log_by_lua shape; **added** = the shape's"
echo "cost minus the same block without metric calls (\`none\`), at JIT steady state."
echo
echo "| shape | instructions/request: none | ours | peer | added: ours | added: peer | peer ÷ ours | CPU µs/request added: ours | peer |"
echo "|---|---|---|---|---|---|---|---|---|"
for s in 1 2 3 4 5 6 8; do
  ps=$s; [ "$s" = 6 ] && ps=5
  ao=$(added "${IR[ours$s]:-}" "${IR[none$s]:-}"); ap=$(added "${IR[peer$ps]:-}" "${IR[none$ps]:-}")
  co=$(added "${CPU[ours$s]:-}" "${CPU[none$s]:-}" 2); cp=$(added "${CPU[peer$ps]:-}" "${CPU[none$ps]:-}" 2)
  put_value "added_ours$s" "$ao"; put_value "added_peer$s" "$ap"; put_value "cpu_added_ours$s" "$co"; put_value "cpu_added_peer$s" "$cp"
  echo "| ($s) ${NAMES[$s]} | $(stat "${IR[none$s]:-}") | $(stat "${IR[ours$s]:-}") | $(stat "${IR[peer$ps]:-}") | ${ao:-—} | ${ap:-—} | $(ratio "$ao" "$ap") | ${co:-—} | ${cp:-—} |"
done
echo
# The drop-in (lua/prometheus.lua) on shape 8 (location drop8: Host names of one length,
# which nginx hashes per byte): the same calls as ours8 through
# nginx-lua-prometheus's API (its users switch for free only if it costs within 10% of
# ours in instructions: bench/targets.tsv).
ad=$(added "${IR[drop8]:-}" "${IR[none8]:-}"); ao8=$(added "${IR[ours8]:-}" "${IR[none8]:-}")
cd8=$(added "${CPU[drop8]:-}" "${CPU[none8]:-}" 2)
put_value "added_dropin8" "$ad"; put_value "cpu_added_dropin8" "$cd8"
echo "- The drop-in \`require(\"prometheus\")\` on shape (8), the same four calls: $(stat "${IR[drop8]:-}") instructions/request, **${ad:-—} added** (ngxprom: ${ao8:-—}; $( [ -n "$ad" ] && [ -n "$ao8" ] && awk -v a="$ad" -v b="$ao8" 'BEGIN {if (b > 0) printf "%+.1f%%", (a / b - 1) * 100}' || echo "—") over ngxprom), CPU µs/request added ${cd8:-—}."
# The request path's targets (ours adds at most a third of the instructions the peer adds for
# (1)-(5); ngxprom.log at most +1 µs of CPU per request) are rows of bench/targets.tsv,
# on the numbers above.
i6=$(added "${IR[ours6]:-}" "${IR[none6]:-}")
# What each way of recording the same four facts adds to a bare `return 200`, the
# entry into Lua included where there is one: the native recorder (rec), ngxprom.log
# (ours6) and the peer's four updates with the ngx.var reads they need (peer5).
ar=$(added "${IR[rec]:-}" "${IR[bare]:-}"); alog=$(added "${IR[ours6]:-}" "${IR[bare]:-}")
apeer=$(added "${IR[peer5]:-}" "${IR[bare]:-}"); apx=$(added "${IR[pxrec]:-}" "${IR[px]:-}")
crec=$(added "${CPU[rec]:-}" "${CPU[bare]:-}" 2)
put_value added_rec "$ar"; put_value log_over_bare "$alog"; put_value peer5_over_bare "$apeer"
put_value added_pxrec "$apx"; put_value cpu_added_rec "$crec"
share() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.0f%%", a / b * 100; else print "—"}' || echo "—"; }
echo "- The native recorder (\`prometheus_record\`, no Lua; the four facts of \`ngxprom.log\`, location \`rec\`): $(stat "${IR[rec]:-}") instructions/request, **${ar:-—} added over a bare \`return 200\`**, where \`ngxprom.log\` adds ${alog:-—} ($(share "$ar" "$alog") of it) and the peer's four updates ${apeer:-—} ($(share "$ar" "$apeer")), each with its entry into Lua; with per-peer tries on a proxied request (\`pxrec\` over \`px\`, the same proxy without the recorder): **${apx:-—} added**. Worker CPU µs/request added over bare: ${crec:-—}."
echo "- The request path's targets (ours adds at most ⅓ of the instructions the peer adds; \`ngxprom.log\` at most +1 µs of CPU per request) are in the targets table (bench/targets.tsv). The CPU column is inside this machine's noise: the instructions are the measure (${i6:-—} added by \`ngxprom.log\`). The gateway plugin (shape 7): bench/e2e.sh, instructions per proxied request with the plugin on and off."
echo "- What ours does per update: the family's method and the child's (one lookup each: the request-path methods are kept in the family and child tables themselves), one cached lookup per label value, the label table read at constant indexes only (so LuaJIT does not allocate a \`{ a, b, c }\` written in the call), then one FFI call that updates the shared zone (its cost: \`ours3\` over \`none3\`). The peer adds to a Lua table in the worker and writes its shared dict later from a timer, so part of its cost is paid outside the request, and a scrape shows other workers' updates up to a second late (bench/peer.sh); it takes the label table's length (\`#\`), which makes the table real, collected later."
echo "- Bare \`return 200\` (no Lua): $(stat "${IR[bare]:-}") instructions/request, $(stat "${CPU[bare]:-}") µs CPU."
echo "- Instructions: ${CG_NOTE:-callgrind on one nginx process (\`master_process off\`), each location in a process of its own (a fresh LuaJIT), $WARM warm-up requests then $N measured per repetition, $REPS repetitions in a row, a full GC before each; median (min–max)}."
echo "- CPU: ${CPU_NOTE:-2 workers, \`wrk $WRK_ARGS\` for ${SECS} s per location after 1 s of warm-up, $CPU_REPS repetitions interleaved; utime+stime of the workers ÷ requests, medians}."
if [ -z "$CG_NOTE" ]; then
  echo "- Per location, last repetition: instructions per request in LuaJIT's VM (interpreter, GC, runtime) / in compiled traces / in our module; then the trace events of its warm-up and measured requests (jit.attach: traces started, stopped, aborted and why; none: the JIT had nothing left to do):"
  for loc in "${LOCS[@]}"; do
    read -r v t m <<<"${SPLIT[$loc]:-0 0 0}"
    echo "  - \`$loc\`: VM $v / traces $t / module $m; ${TRACES[$loc-$REPS]:-no trace events}"
  done
fi
