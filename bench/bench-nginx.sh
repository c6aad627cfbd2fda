# shellcheck shell=bash disable=SC2034  # the sizes and the server's variables are for the steps
# Sourced by the steps that measure in the benchmark server (bench/bench.conf with the
# Lua of bench/bench.lua): hot-path.sh, scrape.sh, scrape-sizes.sh, memory.sh and
# scrape-load.sh, after ROOT is set and bench/common.sh (SMOKE, log, die) is
# sourced. Their sizes (smoke or full mode, BENCH_* overrides), the server's zones, and
# the server itself: bench/run.sh starts one (bench_server_start) and its steps share it
# in the order of its table, each leaving its series there as the one suite did; a step
# run alone starts its own (bench_server_up) and stops it on exit.

if [ "$SMOKE" = 1 ]; then
  N=${BENCH_N:-20000}; LOG_N=${BENCH_LOG_N:-5000}; REPS=${BENCH_REPS:-2}
  SERIES=${BENCH_SERIES:-200}; SCRAPES=${BENCH_SCRAPES:-2}
  SIZES=${BENCH_SIZES:-100 400 1000}; SIZE_SCRAPES=${BENCH_SIZE_SCRAPES:-2}
  LOAD_REPS=${BENCH_LOAD_REPS:-1}; LOAD_SECONDS=${BENCH_LOAD_SECONDS:-2}
  MEM_N="counter=1000 gauge=1000 p1=200 p1w=100 p2=100 p2n=100 p2w=100 p3=10 p3w=10"
else
  N=${BENCH_N:-10000000}; LOG_N=${BENCH_LOG_N:-1000000}; REPS=${BENCH_REPS:-7}
  SERIES=${BENCH_SERIES:-10000}; SCRAPES=${BENCH_SCRAPES:-5}
  SIZES=${BENCH_SIZES:-1000 10000 100000}; SIZE_SCRAPES=${BENCH_SIZE_SCRAPES:-5}
  LOAD_REPS=${BENCH_LOAD_REPS:-3}; LOAD_SECONDS=${BENCH_LOAD_SECONDS:-10}
  MEM_N="counter=20000 gauge=20000 p1=2000 p1w=1000 p2=1000 p2n=1000 p2w=1000 p3=100 p3w=100"
fi
LOAD_CONNS=${BENCH_LOAD_CONNECTIONS:-16}
# A default-precision histogram series takes at most ~21 KB of zone (every chunk of HDR
# counts made), a counter ~100 B: the zones below hold even that.
SCRAPE_ZONE_MB=$(( (SERIES * 22 / 1024) + 16 ))
# The sizes zone holds the largest size: half histograms (default precision, at most
# ~21 KB each), half counters, plus the hash index (1/128 of the zone) and some slack.
SIZES=$(tr -s ' ' '\n' <<<"$SIZES" | sed '/^$/d' | sort -nu | tr '\n' ' '); SIZES=${SIZES% }
MAX_SIZE=0
for s in $SIZES; do
  if ! [[ "$s" =~ ^[0-9]+$ ]] || [ "$s" -lt 2 ]; then echo "bench: BENCH_SIZES: bad size '$s'" >&2; exit 1; fi
  [ "$s" -gt "$MAX_SIZE" ] && MAX_SIZE=$s
done
# shellcheck disable=SC2017  # integer steps in this order are the sizing rule; reordered it sizes otherwise
SIZES_ZONE_MB=$(( MAX_SIZE / 2 * 21760 / 1048576 * 102 / 100 + 24 ))
# p3 histograms take up to ~136 KB each: the mem zone holds every probe at once.
MEM_ZONE_MB=$([ "$SMOKE" = 1 ] && echo 16 || echo 64)

for c in curl awk sort shuf; do command -v "$c" >/dev/null || die "$c is not installed"; done
# The nginx to measure: $NGINX_BIN (default Debian's), with the module built for it.
MODULE=$(env_get MODULE)
[ -f "$MODULE" ] || die "$MODULE is missing: run 'make build' first"
# LuaJIT's jit/v.lua (libluajit2-5.1-common); without it, aborts are not checked.
JITDIR=$(find_jitdir)

# kv KEY LINE: the value of KEY=value in a line of bench.lua's answers.
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
# ratio A B: A ÷ B as "2.5×" (n/a for B <= 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b <= 0) print "n/a"; else printf "%.1f×", a / b }'; }
human_size() { awk -v n="$1" 'BEGIN{ if (n >= 1000 && n % 1000 == 0) printf "%dk", n / 1000; else printf "%d", n }'; }

port_free() {
  if command -v ss >/dev/null; then
    [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
# pick_port [NOT]: a free port in 19000-19899 (other than NOT).
pick_port() {
  local p
  for p in $(shuf -i 19000-19899 -n 100); do
    [ "$p" != "${1:-}" ] && port_free "$p" && { echo "$p"; return 0; }
  done
  return 1
}

# bench_server_start PREFIX: renders bench/bench.conf (2 workers, free 19xxx ports) into
# PREFIX, starts it and writes PREFIX/server.env (what a step needs to use it): MASTER,
# PORT, UPORT, BASE, PREFIX, WORK (client-side files), LUAJIT_VERSION, JITV, and the
# start's cost: SHMEM_START_MB (system Shmem grown, how much of the zones nginx made
# resident at once; noisy if other processes allocate shared memory meanwhile), START_S.
bench_server_start() {
  PREFIX=$1; WORK="$PREFIX/work"; MASTER=""
  mkdir -p "$WORK"; chmod 755 "$PREFIX"
  PORT=$(pick_port) || die "no free port in 19000-19899"
  UPORT=$(pick_port "$PORT") || die "no second free port"
  BASE="http://127.0.0.1:$PORT"
  "$ROOT/scripts/render-conf.sh" bench/bench.conf "$PREFIX" WORKERS=2 PORT="$PORT" UPORT="$UPORT" \
    JITDIR="${JITDIR:-$ROOT/bench}" SCRAPE_ZONE="${SCRAPE_ZONE_MB}m" SIZES_ZONE="${SIZES_ZONE_MB}m" \
    MEM_ZONE="${MEM_ZONE_MB}m" >/dev/null
  # jit.v files are written by the workers (nobody when started as root).
  mkdir -p "$PREFIX/jit"
  if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$PREFIX/jit"; fi
  chmod 755 "$PREFIX/jit"
  "$NGINX_BIN" -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/logs/error.log" || die "nginx -t"
  local shmem0 t0 info=""
  shmem0=$(awk '/^Shmem:/ {print $2}' /proc/meminfo); t0=$(date +%s%N)
  "$NGINX_BIN" -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$PREFIX/logs/error.log" || die "nginx did not start"
  START_S=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN{printf "%.2f", (b - a) / 1e9}')
  SHMEM_START_MB=$(( ($(awk '/^Shmem:/ {print $2}' /proc/meminfo) - shmem0) / 1024 ))
  for _ in $(seq 100); do [ -s "$PREFIX/nginx.pid" ] && break; sleep 0.05; done
  MASTER=$(cat "$PREFIX/nginx.pid" 2>/dev/null) || die "no pid file"
  for _ in $(seq 100); do info=$(curl -sf "$BASE/info" 2>/dev/null) && break; sleep 0.05; done
  [ -n "$info" ] || die "nginx does not answer on $BASE"
  LUAJIT_VERSION=$(kv luajit "$info" | tr _ ' ')
  JITV=$(kv jitv "$info")
  # (declare -g: sourced in a function, bench_server_up, they stay global.)
  declare -p MASTER PORT UPORT BASE PREFIX WORK LUAJIT_VERSION JITV SHMEM_START_MB START_S |
    sed 's/^declare /declare -g /' >"$PREFIX/server.env"
  log "nginx master $MASTER on :$PORT (upstream :$UPORT), prefix $PREFIX, $( [ "$SMOKE" = 1 ] && echo smoke || echo full) mode"
}

# bench_server_stop: stops the server (QUIT, then KILL after 5 s), shows the end of its
# error log when the caller failed ($1: its exit status), removes its prefix unless
# BENCH_KEEP=1.
bench_server_stop() {
  local rc=${1:-0} workers i j
  if [ -n "${MASTER:-}" ] && kill -0 "$MASTER" 2>/dev/null; then
    workers=$(pgrep -P "$MASTER")
    kill -QUIT "$MASTER" 2>/dev/null
    for i in $(seq 50); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$MASTER" 2>/dev/null; then kill -KILL "$MASTER" 2>/dev/null; fi
    for j in $workers; do kill -0 "$j" 2>/dev/null && kill -KILL "$j" 2>/dev/null; done
  fi
  MASTER=""
  if [ "$rc" != 0 ] && [ -f "$PREFIX/logs/error.log" ]; then
    log "last lines of the nginx error log:"
    tail -n 20 "$PREFIX/logs/error.log" >&2
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $PREFIX"; else rm -rf "$PREFIX"; fi
}

# bench_server_up: the server of bench/run.sh when it gave one (BENCH_SERVER: its
# server.env), else one of this step's own, stopped (and its error log checked) on exit.
# Background jobs of the step are ended on exit either way.
bench_server_up() {
  if [ -n "${BENCH_SERVER:-}" ]; then
    # shellcheck disable=SC1090
    . "$BENCH_SERVER" || die "cannot read $BENCH_SERVER"
    OWN_SERVER=0
  else
    bench_server_start "$(mktemp -d "${TMPDIR:-/tmp}/ngxprom-bench.XXXXXX")"
    OWN_SERVER=1
  fi
  trap bench_step_exit EXIT
  trap 'exit 130' INT TERM
}
bench_step_exit() {
  local rc=$? j
  set +e
  for j in $(jobs -p); do kill "$j" 2>/dev/null; done
  if [ "$OWN_SERVER" = 1 ]; then
    [ "$rc" != 0 ] || (clean_log "$PREFIX") || rc=1
    bench_server_stop "$rc"
  fi
  exit "$rc"
}

# sizes_fill ROUTES: the sizes zone holds routes /r/1../r/ROUTES (a counter and a
# default-precision histogram series each, 3 observations), grown in place in batches of
# 5,000; SETUP is the last batch's answer, SIZE_SETUP_S the seconds its creation took
# (added up), and PREFIX/sizes.routes how far it got (a later step continues from there).
sizes_fill() {
  local routes=$1 done=0 from to
  [ -f "$PREFIX/sizes.routes" ] && done=$(cat "$PREFIX/sizes.routes")
  SIZE_SETUP_S=${SIZE_SETUP_S:-0}
  for ((from = done + 1; from <= routes; from += 5000)); do
    to=$((from + 4999)); [ "$to" -le "$routes" ] || to=$routes
    SETUP=$(curl -sf --max-time 900 "$BASE/setup_sizes?from=$from&to=$to") || die "sizes setup $from..$to"
    [ "$(kv errors_zone_full "$SETUP")" = 0 ] || die "the sizes zone is full: $SETUP"
    SIZE_SETUP_S=$(awk -v a="$SIZE_SETUP_S" -v b="$(kv setup_s "$SETUP")" 'BEGIN{print a+b}')
  done
  [ "$routes" -gt "$done" ] && echo "$routes" >"$PREFIX/sizes.routes"
  return 0
}

# gzip_location: GZ_BY (who compresses) and GZ_PATH (the gzip location to scrape), with
# GZ_NOTE when nginx's type match left the usual gzip location uncompressed.
# A module that gzips by itself (Accept-Encoding) answers gzip on a location without
# nginx's gzip; otherwise nginx's gzip filter does, on the event loop. The gzip location
# as users configure it (gzip_types text/plain); if nginx sends that uncompressed,
# the same with gzip_types *.
gzip_location() {
  GZ_PATH=/metrics_sizes_gz; GZ_NOTE=""
  curl -sf -D "$WORK/modgz.h" -o /dev/null -H 'Accept-Encoding: gzip' "$BASE/metrics_sizes" || die "GET /metrics_sizes"
  if grep -qi '^content-encoding: *gzip' "$WORK/modgz.h"; then GZ_BY=module; else GZ_BY=nginx; fi
  if [ "$GZ_BY" = nginx ]; then
    curl -sf -D "$WORK/gz.h" -o /dev/null -H 'Accept-Encoding: gzip' "$BASE/metrics_sizes_gz" || die "GET /metrics_sizes_gz"
    if ! grep -qi '^content-encoding: *gzip' "$WORK/gz.h"; then
      GZ_PATH=/metrics_sizes_gzany
      GZ_NOTE="\`gzip_types text/plain\` left the metrics uncompressed: the module sets \`content_type_len\` to the whole \`Content-Type\` (\`text/plain; version=0.0.4; charset=utf-8\`), so nginx's type match (gzip_types, charset_types, ...) sees that string, not \`text/plain\`; gzip was measured on a second location with \`gzip_types *\`."
    fi
  fi
}
