#!/usr/bin/env bash
# deb-test.sh: the Debian package, end to end on this machine (make deb-test; as root).
#
#   1. builds it (scripts/deb.sh) and checks it with lintian: no tag of any severity
#      (pedantic and experimental included) but those packaging/debian/lintian-overrides
#      justifies;
#   2. installs it with `apt-get install ./….deb`; the postinst must have enabled it as
#      /etc/nginx/modules-enabled/60-mod-http-prometheus.conf, after the lua module's;
#   3. starts the system nginx (/usr/sbin/nginx, /etc/nginx/nginx.conf as installed) with
#      one file of ours in /etc/nginx/conf.d/: a prometheus_zone, a prometheus_metrics
#      location and a location whose log_by_lua_block records through `require "ngxprom"`
#      (and through nginx-lua-prometheus's API, `require "prometheus"`, when the package
#      ships lua/prometheus.lua); no load_module line and no path into the checkout;
#      sends requests and checks the exact counts in the scrape;
#   4. stops nginx, removes the package (nginx -t, a real start and stop), installs it
#      again (enabled again), purges it (nginx -t, start, stop), and checks no file or
#      link of the package is left.
#
# The machine is restored whatever happens (trap): our conf.d file removed, our nginx
# stopped, the package purged. A run killed outright (no trap) leaves its state directory,
# and the next run cleans up after it first, so runs repeat.
#
# The stock configuration's default site listens on :80 and its pid file is
# /run/nginx.pid. When :80 is taken or a system nginx already runs, this script does not
# touch them: it runs the same binary on a copy of nginx.conf without the sites-enabled
# include and with its own pid file (what is tested, the package's modules-enabled link
# and conf.d, is included as in the stock file); DEB_TEST_BESIDE=1 asks for that mode.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=libnginx-mod-http-prometheus
NGINX=/usr/sbin/nginx
CONF=/etc/nginx/conf.d/ngx-prometheus-deb-test.conf
LINK=/etc/nginx/modules-enabled/60-mod-http-prometheus.conf
STATE=/var/tmp/ngx-prometheus-deb-test
ERROR_LOG=/var/log/nginx/error.log
REQUESTS=25   # 5 clients, 5 requests each
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
export DEBIAN_FRONTEND=noninteractive

say() { echo "deb-test: [${SECONDS}s] $*"; }
die() { echo "deb-test: FAIL: $*" >&2; exit 1; }
# (No `| grep -q` under pipefail: a writer cut off by an early exit fails the pipe.)
status() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || true; }
installed() { [[ "$(status)" == *"ok installed" ]]; }
known() { local s; s=$(status); [ -n "$s" ] && [[ "$s" != *not-installed ]]; }

# Any command that fails outside a check names itself (set -e alone would exit silently).
set -E
trap 'echo "deb-test: FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR

[ "$(id -u)" = 0 ] || die "run as root: the test installs and removes a package"

# The nginx this script started, from the pid file it recorded; TERM then KILL, bounded.
stop_nginx() {
  local pidfile pid i
  pidfile=$(cat "$STATE/pidfile" 2>/dev/null) || return 0
  pid=$(cat "$pidfile" 2>/dev/null) || pid=""
  if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$NGINX" ]; then
    kill -QUIT "$pid" 2>/dev/null || true
    for i in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      [ "$i" = 50 ] && kill -TERM "$pid" 2>/dev/null
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$STATE/pidfile"
}

# Links to the package's snippet in modules-enabled, whatever their names (the package
# refuses to be tested when installed before, so any such link is this test's).
ours_enabled() {
  find /etc/nginx/modules-enabled -maxdepth 1 -type l \
    -lname /usr/share/nginx/modules-available/mod-http-prometheus.conf
}
unlink_ours() {
  ours_enabled | while IFS= read -r l; do rm -f "$l"; done
}

# Everything this test may have changed, put back; safe to run at any point.
restore() {
  stop_nginx
  rm -f "$CONF"
  unlink_ours
  if known; then
    "${APT[@]}" purge "$PKG" >"$STATE/purge-restore.log" 2>&1 ||
      { cat "$STATE/purge-restore.log" >&2; echo "deb-test: could not purge $PKG (above)" >&2; }
  fi
  rm -rf "$STATE"
}

# A run killed outright left its state directory (or its conf.d file): clean up first.
if [ -d "$STATE" ] || [ -e "$CONF" ]; then
  say "a previous run did not finish: restoring the machine first"
  mkdir -p "$STATE"
  restore
fi
if known; then
  die "$PKG is already installed (not by this test); the test installs and purges it: remove it first (apt-get purge $PKG)"
fi
mkdir -p "$STATE"
on_exit() {
  local rc=$?
  restore
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Stock, or beside a running nginx / another listener on :80.
if [ -n "${DEB_TEST_BESIDE:-}" ] || [ -n "$(ss -Hltn 'sport = :80')" ] ||
  { [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; }; then
  say "port 80 taken or a system nginx running (or DEB_TEST_BESIDE): nginx.conf without sites-enabled, own pid file"
  grep -q '^pid ' /etc/nginx/nginx.conf || die "/etc/nginx/nginx.conf has no pid line to replace"
  sed -e "s|^pid .*|pid $STATE/nginx.pid;|" -e '\|include /etc/nginx/sites-enabled/|d' \
    /etc/nginx/nginx.conf >"$STATE/nginx.conf"
  NGINX_ARGS=(-c "$STATE/nginx.conf")
  PIDFILE=$STATE/nginx.pid
  STOCK=""
  MODE="beside: nginx.conf without sites-enabled"
else
  NGINX_ARGS=()
  PIDFILE=/run/nginx.pid
  STOCK=1
  MODE="stock /etc/nginx/nginx.conf"
fi

# start_nginx: starts it, checks the pid file names a live nginx.
start_nginx() {
  echo "$PIDFILE" >"$STATE/pidfile"
  "$NGINX" "${NGINX_ARGS[@]}" || die "nginx did not start (see $ERROR_LOG)"
  local i
  for i in $(seq 50); do
    [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && return 0
    sleep 0.1
  done
  die "nginx started but $PIDFILE names no live process"
}

# nginx -t, a start (and a request to the default site when stock), a stop.
nginx_still_starts() {
  "$NGINX" -t "${NGINX_ARGS[@]}" -q || die "nginx -t fails after $1"
  start_nginx
  if [ -n "$STOCK" ]; then
    [ "$(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:80/)" = 200 ] ||
      die "the default site does not answer 200 after $1"
  fi
  stop_nginx
  say "nginx -t, start and stop: fine after $1"
}

# The package.
deb=$("$ROOT/scripts/deb.sh" | tail -1)
[ -f "$deb" ] || die "scripts/deb.sh made no package"
lintian -I -E --pedantic --fail-on error,warning,info,pedantic "$deb" ||
  die "lintian reports tags the package's overrides do not justify"
say "lintian: clean (overrides: $(grep -c '^[a-z]' "$ROOT/packaging/debian/lintian-overrides"))"
mapfile -t PATHS < <(dpkg-deb -c "$deb" | awk '{print $6}' | sed -e 's|^\./|/|' -e 's|/$||' | grep -v '^$')
before=()
for p in "${PATHS[@]}"; do
  if [ -e "$p" ] || [ -L "$p" ]; then before+=("$p"); fi
done

"${APT[@]}" install "$deb" >"$STATE/install.log" 2>&1 ||
  { cat "$STATE/install.log" >&2; die "apt-get install $deb failed"; }
installed || die "$PKG is not installed after apt-get install"
[ "$(readlink "$LINK")" = /usr/share/nginx/modules-available/mod-http-prometheus.conf ] ||
  die "the postinst did not enable the module as $LINK"
order=$(find /etc/nginx/modules-enabled -name '*.conf' -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ')
[[ "$order" == *mod-http-lua.conf*mod-http-prometheus.conf* ]] ||
  die "modules-enabled orders ours before the lua module: $order"
dropin=""
[ -f /usr/share/lua/5.1/prometheus.lua ] && dropin=1
say "installed $(basename "$deb") (enabled: $order; drop-in: ${dropin:-no})"

# The configuration: one file in conf.d (inside the stock http block).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  echo "# Written by ngx-prometheus's scripts/deb-test.sh, which removes it when it ends."
  echo "prometheus_zone debtest 1m;"
  if [ -n "$dropin" ]; then
    # nginx-lua-prometheus's documented setup: init and declare per worker; record in
    # the log phase.
    cat <<'EOF'
init_worker_by_lua_block {
    debtest_prometheus = require("prometheus").init("debtest")
    debtest_dropin_requests = debtest_prometheus:counter(
        "debtest_dropin_requests_total", "Requests the package test sent.", { "code" })
}
EOF
  fi
  cat <<EOF
server {
    listen 127.0.0.1:$port;
    access_log off;
    location = /metrics {
        prometheus_metrics debtest;
    }
    location /app/ {
        return 200 "ok\n";
        log_by_lua_block {
            require("ngxprom").zone("debtest"):counter("debtest_requests_total",
                "Requests the package test sent.", { "code" }):labels(ngx.var.status):inc()
EOF
  if [ -n "$dropin" ]; then
    echo '            debtest_dropin_requests:inc(1, { ngx.var.status })'
  fi
  echo "        }"
  echo "    }"
  if [ -n "$dropin" ]; then
    echo '    location = /dropin-metrics {'
    echo '        content_by_lua_block { debtest_prometheus:collect() }'
    echo '    }'
  fi
  echo "}"
} >"$CONF"
! grep -q load_module "$CONF" || die "the test's own configuration loads a module"
! grep -qF "$ROOT" "$CONF" || die "the test's own configuration names the checkout"
dump=$("$NGINX" -T "${NGINX_ARGS[@]}" 2>&1) || die "nginx -T fails: $dump"
grep -qx 'load_module modules/ngx_prometheus.so;' <<<"$dump" ||
  die "nginx -T does not show the package's load_module line"

log_start=$(stat -c %s "$ERROR_LOG" 2>/dev/null || echo 0)
start_nginx
pid=$(cat "$PIDFILE")
say "nginx $pid up ($MODE), ours on 127.0.0.1:$port"

# Lua's require "ngx_prometheus" (through the cpath link) must be the copy nginx loaded.
workers=$(pgrep -P "$pid" || true)
worker=${workers%%$'\n'*}
[ -n "$worker" ] || die "nginx has no worker"
maps=$(grep -o '/[^ ]*ngx_prometheus\.so' "/proc/$worker/maps" | sort -u | tr '\n' ' ' || true)
[ "$maps" = "/usr/lib/nginx/modules/ngx_prometheus.so " ] || die "a worker maps: $maps"

codes=$STATE/codes
: >"$codes"
clients=()
for c in 1 2 3 4 5; do
  urls=()
  for i in 1 2 3 4 5; do urls+=("http://127.0.0.1:$port/app/$c/$i"); done
  curl -sS -o /dev/null -w '%{http_code}\n' "${urls[@]}" >>"$codes.$c" &
  clients+=($!)
done
for c in "${clients[@]}"; do wait "$c" || die "a client failed"; done
cat "$codes".? >"$codes"
[ "$(grep -cx 200 "$codes")" = "$REQUESTS" ] || die "not $REQUESTS answers of 200: $(sort "$codes" | uniq -c)"

# value URL NAME: the sample NAME{code="200"}'s value in URL's text exposition ("" if none).
value() {
  curl -sS "$1" | awk -v n="$2{code=\"200\"}" '$1 == n { print $2 }'
}
# expect URL NAME: the value reaches $REQUESTS (the log phase runs after the client has
# its answer: the last requests may be recorded a moment later) and is exactly that.
expect() {
  local v="" i
  for i in $(seq 50); do
    v=$(value "$1" "$2")
    [ "$v" = "$REQUESTS" ] && break
    sleep 0.1
  done
  if [ "$v" != "$REQUESTS" ]; then
    tail -c +"$((log_start + 1))" "$ERROR_LOG" | tail -20 >&2
    die "$2{code=\"200\"} is '$v' at $1, not $REQUESTS (the error log's last lines above)"
  fi
}
scrape="http://127.0.0.1:$port/metrics?format=text"
expect "$scrape" debtest_requests_total
text=$(curl -sS "$scrape")
grep -qx '# TYPE debtest_requests_total counter' <<<"$text" || die "no TYPE line for debtest_requests_total in: $text"
checked="debtest_requests_total (ngxprom)"
if [ -n "$dropin" ]; then
  expect "$scrape" debtest_dropin_requests_total
  expect "http://127.0.0.1:$port/dropin-metrics" debtest_dropin_requests_total
  checked+=", debtest_dropin_requests_total (prometheus, in both expositions)"
fi
# Recorded once each: a second look gives the same.
[ "$(value "$scrape" debtest_requests_total)" = "$REQUESTS" ] || die "the count moved after the traffic stopped"
say "$REQUESTS requests, exact in the scrape: $checked"

stop_nginx
rm -f "$CONF"
new_log=$(tail -c +"$((log_start + 1))" "$ERROR_LOG" 2>/dev/null || true)
if grep -E '\[(emerg|alert|crit|error)\]' <<<"$new_log"; then
  die "nginx logged errors (above) in $ERROR_LOG"
fi

# Remove: the files go, the link is kept disabled (*.removed), nginx still starts.
"${APT[@]}" remove "$PKG" >"$STATE/remove.log" 2>&1 ||
  { cat "$STATE/remove.log" >&2; die "apt-get remove failed"; }
! installed || die "$PKG is still installed after apt-get remove"
if [ -e "$LINK" ] || [ -L "$LINK" ]; then die "$LINK is still there after remove"; fi
[ -L "$LINK.removed" ] || die "the prerm did not keep the link as $LINK.removed"
for p in /usr/lib/nginx/modules/ngx_prometheus.so /usr/share/lua/5.1/ngxprom.lua; do
  [ ! -e "$p" ] || die "$p is still there after remove"
done
nginx_still_starts "apt-get remove"

# Installed again: the postinst enables the kept link again.
"${APT[@]}" install "$deb" >"$STATE/reinstall.log" 2>&1 ||
  { cat "$STATE/reinstall.log" >&2; die "apt-get install after remove failed"; }
if [ ! -L "$LINK" ] || [ -L "$LINK.removed" ]; then
  die "installing after a remove did not enable $LINK again"
fi
say "reinstalled after remove: enabled again"

# Purge (from installed): nothing of ours is left.
"${APT[@]}" purge "$PKG" >"$STATE/purge.log" 2>&1 ||
  { cat "$STATE/purge.log" >&2; die "apt-get purge failed"; }
! known || die "dpkg still knows $PKG after purge"
left=()
for p in "${PATHS[@]}" "$LINK" "$LINK.removed" "$CONF"; do
  if [ -e "$p" ] || [ -L "$p" ]; then
    [[ " ${before[*]} " == *" $p "* ]] || left+=("$p")
  fi
done
mapfile -t -O "${#left[@]}" left < <(ours_enabled)
[ ${#left[@]} = 0 ] || die "left after purge: ${left[*]}"
! compgen -G "/var/lib/dpkg/info/$PKG.*" >/dev/null || die "dpkg's files for $PKG are left"
nginx_still_starts "apt-get purge"
say "removed and purged: none of the package's ${#PATHS[@]} paths left (beyond the ${#before[@]} shared directories that were there before)"
say "passed"
