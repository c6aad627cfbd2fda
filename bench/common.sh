# shellcheck shell=bash
# Sourced by the benchmarks (after ROOT is set): what several of them need.

# SMOKE=1 for a smoke run (BENCH_SMOKE set): tiny sizes, only that every step still works.
# shellcheck disable=SC2034  # SMOKE: for the scripts that source this
case "${BENCH_SMOKE:-0}" in 0 | "" | no | false) SMOKE=0 ;; *) SMOKE=1 ;; esac

# log MESSAGE, die MESSAGE: progress and failure on stderr, named by the script.
BENCH_NAME=$(basename "$0" .sh)
log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# The nginx in use, as scripts/nginx-env.sh describes it ($NGINX_BIN, default Debian's):
# env_get KEY is one of its lines (MODULE, SOURCE_DIR, DESCRIPTION...); NGINX_BIN is the
# binary's absolute path.
ENV_LINES=$("$ROOT/scripts/nginx-env.sh") || die "scripts/nginx-env.sh failed"
env_get() { sed -n "s/^$1=//p" <<<"$ENV_LINES"; }
NGINX_BIN=$(env_get NGINX_BIN)

# step_init NAME: this script is the step NAME of bench/run.sh. Its section is what it
# prints; other fragments go to OUT/NAME.<part>.md (fragment) and its measured numbers,
# one "key<TAB>value" a line, to OUT/NAME.tsv (put_value), for bench/targets.tsv. OUT is
# BENCH_OUT (run.sh gives its work directory) or .build/bench when a step runs alone.
step_init() {
  STEP=$1; OUT=${BENCH_OUT:-$ROOT/.build/bench}
  mkdir -p "$OUT"; rm -f "$OUT/$STEP".*.md; : >"$OUT/$STEP.tsv"
}
# put_value KEY VALUE: one measured number (nothing for an empty VALUE: not measured).
put_value() { [ -z "$2" ] || printf '%s\t%s\n' "$1" "$2" >>"$OUT/$STEP.tsv"; }
# value STEP KEY: a number another step put (nothing when it did not run).
value() { [ -f "$OUT/$1.tsv" ] && awk -F'\t' -v k="$2" '$1 == k {print $2; exit}' "$OUT/$1.tsv"; return 0; }
# ... | fragment PART: stdin is the fragment PART of this step's report.
fragment() { cat >"$OUT/$STEP.$1.md"; }

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The median of numbers on stdin, one per line; nothing for no input.
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# stats FIELD AWK-ARGS...: "median min max count" of column FIELD (f) of the tab-separated
# rows that AWK-ARGS select and print ("nan nan nan 0" for none).
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

# rotate REP ITEMS...: the items rotated by REP (cases alternate between repetitions).
rotate() {
  local k=$1 i; shift; local a=("$@") n=$#
  for ((i = 0; i < n; i++)); do echo "${a[$(((i + k) % n))]}"; done
}

# find_peer: nginx-lua-prometheus, unmodified, from ../shared/peers (BENCH_PEER_DIR):
# sets PEERDIR (a Lua path entry), PEER (true/false) and PEER_REV (its commit). When it
# is absent the benchmark says so and leaves the peer's column out.
# shellcheck disable=SC2034  # PEER, PEER_REV: for the caller
find_peer() {
  PEERDIR=${BENCH_PEER_DIR:-$ROOT/../shared/peers/nginx-lua-prometheus}
  if [ -f "$PEERDIR/prometheus.lua" ]; then
    PEERDIR=$(cd "$PEERDIR" && pwd); PEER=true
    PEER_REV=$(sed -n 's/.*commit \([0-9a-f]\{40\}\).*/\1/p' "$PEERDIR/SOURCE.md" | sed -n 1p)
  else
    log "the peer is not at $PEERDIR: its column is left out"
    PEERDIR=$ROOT/bench; PEER=false; PEER_REV=""
  fi
}

# find_jitdir: the directory holding LuaJIT's jit/*.lua (v.lua for jit.v, vmdef.lua for
# jit.attach's names; libluajit2-5.1-common), that of an OpenResty-style build first (its
# jit/ must match its VM); nothing when there is none.
find_jitdir() {
  local f
  for f in "$(dirname "$NGINX_BIN")"/../luajit/share/luajit*/jit/v.lua /usr/share/luajit*/jit/v.lua \
           /usr/local/share/luajit*/jit/v.lua; do
    [ -f "$f" ] && [ -f "${f%/v.lua}/vmdef.lua" ] && { dirname "$(dirname "$f")"; return; }
  done
  return 0
}

# workers_cpu PREFIX: utime+stime of the workers of the nginx whose prefix is PREFIX (its
# nginx.pid), in clock ticks.
workers_cpu() {
  local total=0 pid
  for pid in $(pgrep -P "$(cat "$1/nginx.pid")"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# gets CONFIG COUNT URL [HEADER]: COUNT GETs of URL on one keep-alive connection (a curl
# config file, written on first use), each with HEADER when given.
gets() {
  local cfg=$1 n=$2 url=$3 header=${4:+header = \"$4\"$'\n'}
  [ -f "$cfg" ] || for _ in $(seq "$n"); do printf 'url = "%s"\n%soutput = "/dev/null"\n' "$url" "$header"; done >"$cfg"
  curl -sf -K "$cfg"
}

# Instructions per request, deterministically: the nginx of a prefix in one process
# under callgrind, and windows of requests each measured alone.
# callgrind_nginx PREFIX: starts it in the background; CG_PID is its pid, its dumps are
# PREFIX/cg.*.
callgrind_nginx() {
  # --smc-check: LuaJIT writes and patches machine code on the heap.
  valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$1/cg.%p" \
    "$NGINX_BIN" -p "$1" -c "$1/nginx.conf" -g 'daemon off; master_process off;' >"$1/valgrind.log" 2>&1 &
  CG_PID=$!
}
# callgrind_window PREFIX TAG COMMAND...: counters zeroed, COMMAND run, a dump named
# TAG; CG_DUMP is its file. Fails when COMMAND fails or no dump appears.
callgrind_window() {
  local prefix=$1 tag=$2; shift 2
  callgrind_control -z "$CG_PID" >/dev/null 2>&1   # (it says "sending command" on stderr)
  "$@" || return 1
  callgrind_control -d "$tag" "$CG_PID" >/dev/null 2>&1
  CG_DUMP=$(grep -l "^desc: Trigger: dump $tag\$" "$prefix"/cg.* | head -1)
  [ -n "$CG_DUMP" ]
}
# cg_total DUMP: the dump's instructions; per_request DUMP N: divided by its N requests.
cg_total() { awk '/^totals:/ {print $2}' "$1"; }
per_request() { awk -v n="$2" '/^totals:/ {printf "%.0f", $2 / n}' "$1"; }

# clean_log PREFIX: stops the benchmark when nginx logged an error: a measurement over
# requests that raised (a failed require, a Lua error) measures the error path.
clean_log() {
  local bad; bad=$(grep -E '\[(error|crit|alert|emerg)\]' "$1/logs/error.log" | head -3 || true)
  [ -z "$bad" ] || { log "FAILED: errors in $1/logs/error.log: $bad"; exit 1; }
}

# cargo_bench_table BENCH NAME=VALUE: runs the cargo bench target bench/micro/BENCH.rs (the
# pure layers, built without the nginx glue) with NAME=VALUE in its environment and prints
# the rows of the markdown table it writes. Never beside another cargo build.
cargo_bench_table() {
  (cd "$ROOT" && env "$2" cargo bench --locked --no-default-features --bench "$1" 2>/dev/null |
    grep '^|')
}
